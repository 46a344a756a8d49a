//! The client's `Config::auth` login (memcached's ASCII authentication token) against servers
//! started with `-Y`: Debian's memcached, the reference, and ferrocached.

use std::path::PathBuf;

use ferrocache_client::{blocking, Config, Credentials, ServerSpec};
use ferrocache_testkit::{Flavor, Server};

fn users_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrocache-client-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("users");
    std::fs::write(&path, "alice:secret\nbob:hunter2\n").expect("write users");
    path
}

fn client(server: &Server, auth: Option<&str>) -> blocking::Client {
    let spec = ServerSpec::parse(&format!("127.0.0.1:{}", server.port())).expect("address");
    let mut config = Config::new(vec![spec]);
    config.auth = auth.map(|a| Credentials::parse(a).expect("user:password"));
    blocking::Client::new(config).expect("runtime")
}

#[test]
fn logs_in_to_servers_started_with_an_auth_file() {
    let users = users_file();
    let users_arg = users.to_str().expect("utf-8 path");
    for flavor in [Flavor::Memcached, Flavor::Ferrocached] {
        let server = Server::start(flavor, &["-Y", users_arg]);
        let c = client(&server, Some("bob:hunter2"));
        assert!(
            c.set(b"k", b"v", 3, 0).expect("set after login"),
            "{flavor:?}"
        );
        let value = c.get(b"k").expect("get").expect("hit");
        assert_eq!((value.data.as_slice(), value.flags), (&b"v"[..], 3));
        // The login set stored nothing under its key.
        assert!(c.get(b"auth").expect("get").is_none(), "{flavor:?}");

        let wrong = client(&server, Some("bob:wrong"));
        assert!(
            wrong.get(b"k").is_err(),
            "{flavor:?}: a wrong password must fail"
        );
        let anonymous = client(&server, None);
        assert!(
            anonymous.get(b"k").is_err(),
            "{flavor:?}: no login must fail"
        );
    }
    let _ = std::fs::remove_dir_all(users.parent().expect("dir"));
}

#[test]
fn credentials_parse_and_hide_the_password() {
    let c = Credentials::parse("alice:pa:ss").expect("valid");
    assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "pa:ss"));
    assert!(!format!("{c:?}").contains("pa:ss"));
    for bad in ["alice", ":pw", "alice:", "al ice:pw", "alice:p w"] {
        assert!(Credentials::parse(bad).is_none(), "{bad:?}");
    }
}
