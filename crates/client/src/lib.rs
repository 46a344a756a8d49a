//! ferrocache-client: a memcached client that places keys on many servers by ketama exactly as
//! libmemcached and twemproxy do.

pub mod ring;
