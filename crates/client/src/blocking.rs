//! A synchronous wrapper: the async client driven by its own current-thread runtime, for the CLI
//! and for programs without tokio.

use std::collections::HashMap;

use crate::{ClientStats, Config, PerServer, Result, Stats, StoreCommand, StoreStatus, Value};

/// The blocking client. Not for use inside an async runtime (it would block a worker); use
/// [`crate::Client`] there.
pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: crate::Client,
}

impl Client {
    pub fn new(config: Config) -> std::io::Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Client {
            runtime,
            inner: crate::Client::new(config),
        })
    }

    /// The async client underneath.
    pub fn async_client(&self) -> &crate::Client {
        &self.inner
    }

    /// Client-side counters.
    pub fn stats_counters(&self) -> &ClientStats {
        self.inner.stats_counters()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        self.runtime.block_on(self.inner.get(key))
    }

    pub fn gets(&self, key: &[u8]) -> Result<Option<Value>> {
        self.runtime.block_on(self.inner.gets(key))
    }

    pub fn gat(&self, key: &[u8], exptime: i64) -> Result<Option<Value>> {
        self.runtime.block_on(self.inner.gat(key, exptime))
    }

    pub fn gats(&self, key: &[u8], exptime: i64) -> Result<Option<Value>> {
        self.runtime.block_on(self.inner.gats(key, exptime))
    }

    pub fn get_multi(&self, keys: &[&[u8]]) -> Result<HashMap<Vec<u8>, Value>> {
        self.runtime.block_on(self.inner.get_multi(keys))
    }

    pub fn gets_multi(&self, keys: &[&[u8]]) -> Result<HashMap<Vec<u8>, Value>> {
        self.runtime.block_on(self.inner.gets_multi(keys))
    }

    pub fn gat_multi(&self, keys: &[&[u8]], exptime: i64) -> Result<HashMap<Vec<u8>, Value>> {
        self.runtime.block_on(self.inner.gat_multi(keys, exptime))
    }

    pub fn gats_multi(&self, keys: &[&[u8]], exptime: i64) -> Result<HashMap<Vec<u8>, Value>> {
        self.runtime.block_on(self.inner.gats_multi(keys, exptime))
    }

    pub fn store(
        &self,
        command: StoreCommand,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
    ) -> Result<StoreStatus> {
        self.runtime
            .block_on(self.inner.store(command, key, value, flags, exptime))
    }

    pub fn set(&self, key: &[u8], value: &[u8], flags: u32, exptime: i64) -> Result<bool> {
        self.runtime
            .block_on(self.inner.set(key, value, flags, exptime))
    }

    pub fn store_noreply(
        &self,
        command: StoreCommand,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
    ) -> Result<()> {
        self.runtime.block_on(
            self.inner
                .store_noreply(command, key, value, flags, exptime),
        )
    }

    pub fn set_noreply(&self, key: &[u8], value: &[u8], flags: u32, exptime: i64) -> Result<()> {
        self.runtime
            .block_on(self.inner.set_noreply(key, value, flags, exptime))
    }

    pub fn delete_noreply(&self, key: &[u8]) -> Result<()> {
        self.runtime.block_on(self.inner.delete_noreply(key))
    }

    pub fn incr_noreply(&self, key: &[u8], by: u64) -> Result<()> {
        self.runtime.block_on(self.inner.incr_noreply(key, by))
    }

    pub fn decr_noreply(&self, key: &[u8], by: u64) -> Result<()> {
        self.runtime.block_on(self.inner.decr_noreply(key, by))
    }

    pub fn touch_noreply(&self, key: &[u8], exptime: i64) -> Result<()> {
        self.runtime
            .block_on(self.inner.touch_noreply(key, exptime))
    }

    pub fn flush_all_noreply(&self, delay: i64) -> PerServer<()> {
        self.runtime.block_on(self.inner.flush_all_noreply(delay))
    }

    /// See [`crate::Client::shutdown`].
    pub fn shutdown(&self) -> PerServer<()> {
        self.runtime.block_on(self.inner.shutdown())
    }

    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.runtime.block_on(self.inner.delete(key))
    }

    pub fn incr(&self, key: &[u8], by: u64) -> Result<Option<u64>> {
        self.runtime.block_on(self.inner.incr(key, by))
    }

    pub fn decr(&self, key: &[u8], by: u64) -> Result<Option<u64>> {
        self.runtime.block_on(self.inner.decr(key, by))
    }

    pub fn touch(&self, key: &[u8], exptime: i64) -> Result<bool> {
        self.runtime.block_on(self.inner.touch(key, exptime))
    }

    pub fn flush_all(&self, delay: i64) -> PerServer<()> {
        self.runtime.block_on(self.inner.flush_all(delay))
    }

    pub fn version(&self) -> PerServer<String> {
        self.runtime.block_on(self.inner.version())
    }

    pub fn stats(&self, arg: Option<&str>) -> PerServer<Stats> {
        self.runtime.block_on(self.inner.stats(arg))
    }

    pub fn verbosity(&self, level: u32) -> PerServer<()> {
        self.runtime.block_on(self.inner.verbosity(level))
    }

    pub fn server_for(&self, key: &[u8]) -> Result<String> {
        self.inner.server_for(key)
    }

    pub fn dead_servers(&self) -> Vec<String> {
        self.inner.dead_servers()
    }
}
