//! Helpers shared by the end-to-end tests: starting servers on free ports, talking to them.
