// The stream-path tests of stream-path.test.ts on the net.Socket path
// (L7MP_TCP_FASTPATH=off, inherited by the gateway processes they start):
// both paths must behave alike, and a session on this one shows no `path`.

process.env.L7MP_TCP_FASTPATH = 'off';
await import('./stream-path.test.js');
