//! ferrocache-client
