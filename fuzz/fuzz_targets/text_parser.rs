//! Feeds arbitrary bytes to the text parser, request after request, the way a connection does:
//! no input may panic it, and every request must consume at least one byte and no more than given.
#![no_main]

use ferrocache_protocol::text::{parse, Parse, ParseConfig, Request};
use libfuzzer_sys::fuzz_target;

fn fits(config: &ParseConfig, key_len: usize, flags: u32, value_len: usize) -> bool {
    let flags = if flags != 0 { 4 } else { 0 };
    48 + key_len + 1 + flags + value_len + 2 + 8 <= config.item_size_max
}

const CONFIG: ParseConfig = ParseConfig {
    item_fits: fits,
    item_size_max: 4096,
    use_cas: true,
};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while !rest.is_empty() {
        match parse(rest, &CONFIG) {
            Parse::Incomplete(hint) => {
                if let Some(total) = hint {
                    assert!(total > rest.len(), "incomplete but the hint says it fits");
                }
                break;
            }
            Parse::Done(request, used) => {
                assert!(used > 0 && used <= rest.len());
                match request {
                    Request::Get { keys, .. } | Request::Gat { keys, .. } => {
                        for key in keys.flatten() {
                            assert!(key.len() <= 250 && !key.contains(&b' '));
                        }
                    }
                    Request::Store { key, data, .. } => {
                        assert!(key.len() <= 250);
                        assert!(data.len() <= 4096);
                    }
                    Request::Close => break,
                    _ => {}
                }
                rest = &rest[used..];
            }
        }
    }
});
