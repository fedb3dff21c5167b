// The stream-path tests of stream-path.test.ts with L7MP_COMPILED=off
// (inherited by the gateway processes they start): the raw socket path with
// each connection decided in JavaScript, as before compiled listeners; its
// sessions show "path": "raw" without `splice.compiled`.

process.env.L7MP_COMPILED = 'off';
await import('./stream-path.test.js');
