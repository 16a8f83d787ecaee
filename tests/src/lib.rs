//! End-to-end tests of the real binaries (`chatd`, `gateway`) as separate
//! processes over real sockets. The tests are in `tests/`; the support they
//! share is `chat-testkit`.
