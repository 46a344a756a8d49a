//! ferrocache-protocol
