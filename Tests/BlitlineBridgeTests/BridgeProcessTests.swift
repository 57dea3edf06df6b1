import Testing

/// The suites that run `blitline-bridge` processes against the test broker and a simulator,
/// one test at a time: at once, a dozen bridge processes starve the timing-sensitive tests of
/// the other targets that deploy/test.sh runs beside them on a 2-core machine.
@Suite(.serialized) enum BridgeProcessTests {}
