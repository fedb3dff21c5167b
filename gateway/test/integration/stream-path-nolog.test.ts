// The stream-path tests of stream-path.test.ts on compiled listeners without
// an access log: the addon's Forwarder then keeps no addresses for the
// sessions it ends, and the tests read each end from the metrics instead.

process.env.L7MP_TEST_NO_ACCESS_LOG = '1';
await import('./stream-path.test.js');
