//! UDP (`-U`) over real sockets: the framing, what is dropped, and the replies, compared byte for
//! byte with the reference memcached where the two agree by design.

use std::net::UdpSocket;
use std::time::Duration;

use ferrocache_testkit::{Flavor, Server};

/// A UDP client of one server. Both servers run with `-t 1` in the comparisons, so datagrams are
/// answered in the order sent and a sentinel's reply closes the previous request's.
struct Udp {
    socket: UdpSocket,
    next_id: u16,
}

/// A datagram's frame header and payload.
type Datagram = ((u16, u16, u16, u16), Vec<u8>);

impl Udp {
    fn new(server: &Server) -> Udp {
        let port = server.udp_port().expect("the server serves UDP");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        // Room for a burst of replies (the kernel caps it at net.core.rmem_max; 4 MB here).
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
        socket.connect(("127.0.0.1", port)).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Udp { socket, next_id: 1 }
    }

    fn send_raw(&self, bytes: &[u8]) {
        self.socket.send(bytes).expect("send");
    }

    fn recv(&self) -> Datagram {
        self.try_recv().expect("a datagram before the timeout")
    }

    /// The next datagram, or None after the read timeout.
    fn try_recv(&self) -> Option<Datagram> {
        let mut buf = vec![0u8; 70_000];
        let n = self.socket.recv(&mut buf).ok()?;
        assert!(n >= 8, "a datagram shorter than its header");
        let field = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
        Some(((field(0), field(2), field(4), field(6)), buf[8..n].to_vec()))
    }

    /// Sends `datagram` as is, then a sentinel (`mn` under its own request id), and returns what
    /// came back before the sentinel's reply.
    fn exchange_raw(&mut self, datagram: &[u8]) -> Vec<Datagram> {
        self.send_raw(datagram);
        let sentinel = self.next_id.wrapping_add(30_000);
        let mut frame = header(sentinel, 0, 1, 0);
        frame.extend_from_slice(b"mn\r\n");
        self.send_raw(&frame);
        let mut got = Vec::new();
        loop {
            let datagram = self.recv();
            if datagram.0 .0 == sentinel {
                assert_eq!(datagram.1, b"MN\r\n");
                return got;
            }
            got.push(datagram);
        }
    }

    /// Sends `payload` as a one-datagram request and returns the datagrams of its reply.
    fn exchange(&mut self, payload: &[u8]) -> Vec<Datagram> {
        self.next_id += 1;
        let mut datagram = header(self.next_id, 0, 1, 0);
        datagram.extend_from_slice(payload);
        self.exchange_raw(&datagram)
    }
}

fn header(id: u16, seq: u16, total: u16, reserved: u16) -> Vec<u8> {
    [id, seq, total, reserved]
        .iter()
        .flat_map(|f| f.to_be_bytes())
        .collect()
}

fn binary_request(opcode: u8, key: &[u8]) -> Vec<u8> {
    let mut r = vec![0x80, opcode];
    r.extend_from_slice(&(key.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&(key.len() as u32).to_be_bytes());
    r.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    r.extend_from_slice(&[0; 8]);
    r.extend_from_slice(key);
    r
}

/// The same requests to memcached and ferrocached, datagram for datagram. Left out by design:
/// CAS ids (`gets`); a multi-key get (memcached sends each hit as a message of its own, numbered
/// from 0 again, and a miss before a hit as an empty datagram numbered 0 of 0; see
/// `a_get_is_one_message_until_it_passes_a_megabyte`);
/// and a storage command whose data runs past the datagram's end (memcached goes on reading it,
/// or swallowing it, from the next datagrams, whoever sends them; we drop it with its datagram).
#[test]
fn udp_replies_match_memcached() {
    let big = "x".repeat(3000);
    let payloads: Vec<Vec<u8>> = [
        "set a 0 0 5\r\nhello\r\n".to_string(),
        "get a\r\n".into(),
        "get nope\r\n".into(),
        format!("set big 7 0 3000\r\n{big}\r\n"),
        "get big\r\n".into(),
        "set n 0 0 1 noreply\r\n1\r\n".into(),
        "get n\r\n".into(),
        "incr n 41\r\ndelete a\r\nget a\r\n".into(),
        "touch n 100\r\nmg n v t\r\nmn\r\n".into(),
        "bogus\r\n".into(),
        "get a".into(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([binary_request(0x0a, b""), binary_request(0x00, b"zz")])
    .collect();
    let mut replies = Vec::new();
    for flavor in [Flavor::Memcached, Flavor::Ferrocached] {
        let server = Server::start(flavor, &["-U", "-1", "-t", "1"]);
        let mut udp = Udp::new(&server);
        let mut got: Vec<Vec<Datagram>> = payloads.iter().map(|p| udp.exchange(p)).collect();
        // Dropped without a reply: shorter than a header, and a request of two datagrams.
        got.push(udp.exchange_raw(b"\x00\x01\x00\x00\x00"));
        let mut two = header(99, 0, 2, 0);
        two.extend_from_slice(b"get a\r\n");
        got.push(udp.exchange_raw(&two));
        // A reserved field that is not 0 is ignored, and the reply's is 0.
        let mut reserved = header(98, 0, 1, 77);
        reserved.extend_from_slice(b"get n\r\n");
        got.push(udp.exchange_raw(&reserved));
        replies.push(got);
    }
    let (memcached, ferrocached) = (&replies[0], &replies[1]);
    for (i, (m, f)) in memcached.iter().zip(ferrocached).enumerate() {
        let shown = |d: &[Datagram]| {
            d.iter()
                .map(|(h, p)| format!("{h:?} {:?}", String::from_utf8_lossy(p)))
                .collect::<Vec<_>>()
        };
        assert_eq!(shown(f), shown(m), "request {i}");
    }
    // Spot checks that the comparison saw what it should.
    let get_big = &ferrocached[4];
    let heads: Vec<_> = get_big.iter().map(|(h, p)| (h.1, h.2, p.len())).collect();
    assert_eq!(heads, [(0, 3, 1392), (1, 3, 1392), (2, 3, 241)]);
    assert!(ferrocached[5].is_empty(), "noreply");
    assert!(ferrocached[10].is_empty(), "an incomplete command");
    assert!(ferrocached[13..15].iter().all(Vec::is_empty), "dropped");
    assert_eq!(ferrocached[15][0].0, (98, 0, 1, 0));
}

/// One message per command: a multi-key get's hits come back together, as one message numbered
/// 0..n; past a megabyte the reply is sent and the get goes on in a new message, so a get naming
/// a big item many times never piles its reply up.
#[test]
fn a_get_is_one_message_until_it_passes_a_megabyte() {
    let server = Server::ferrocached(&["-U", "-1", "-t", "1"]);
    let mut udp = Udp::new(&server);
    let mut c = server.connect();
    c.line("set a 0 0 5\r\nhello\r\n");
    let got = udp.exchange(b"get a b a\r\n");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, (2, 0, 1, 0));
    assert_eq!(
        got[0].1,
        b"VALUE a 0 5\r\nhello\r\nVALUE a 0 5\r\nhello\r\nEND\r\n"
    );

    let value = "v".repeat(400 * 1024);
    c.line(&format!("set big 0 0 {}\r\n{value}\r\n", value.len()));
    // 1.6 MB of reply in some 1,180 datagrams: the kernel may drop some of them on the way in
    // (UDP), so this counts the messages by the datagram counts they carry.
    udp.next_id += 1;
    let mut request = header(udp.next_id, 0, 1, 0);
    request.extend_from_slice(b"get big big big big\r\n");
    udp.send_raw(&request);
    let mut totals = std::collections::BTreeSet::new();
    let mut bytes = 0;
    while let Some(((id, seq, total, reserved), payload)) = udp.try_recv() {
        assert_eq!((id, reserved), (udp.next_id, 0));
        assert!(seq < total);
        totals.insert(total);
        bytes += payload.len();
        if payload.ends_with(b"END\r\n") {
            break;
        }
    }
    // Three values (past a megabyte), then the fourth with END: two messages of bounded size.
    let block = format!("VALUE big 0 {}\r\n", value.len()).len() + value.len() + 2;
    assert_eq!(
        totals.into_iter().collect::<Vec<_>>(),
        [udp_datagrams(block + 5), udp_datagrams(3 * block)]
    );
    assert!(bytes <= 4 * block + 5 && bytes > block, "{bytes} bytes");
}

/// How many datagrams a reply of `len` bytes takes.
fn udp_datagrams(len: usize) -> u16 {
    len.div_ceil(1392) as u16
}

/// memcached counts a UDP "connection" per worker thread on each UDP socket, and so do we; its
/// counters count UDP commands.
#[test]
fn udp_readers_count_as_connections_and_commands_count() {
    let server = Server::ferrocached(&["-U", "-1", "-t", "3"]);
    let mut udp = Udp::new(&server);
    udp.exchange(b"set a 0 0 1\r\nx\r\n");
    udp.exchange(b"get a b\r\n");
    let mut c = server.connect();
    // A datagram's counters are added once it is answered; another reader may answer the next.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let stats = c.request("stats\r\n", "END\r\n");
        if stats.contains("STAT cmd_get 2\r\n") || std::time::Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stat = |name: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .to_string()
    };
    // The TCP listener, three UDP readers and this client, less one (memcached's count).
    assert_eq!(stat("curr_connections"), "4");
    assert_eq!(stat("cmd_set"), "1");
    assert_eq!(stat("cmd_get"), "2");
    assert_eq!(stat("get_hits"), "1");
    // The sentinels' `mn` are meta commands too; the reads count the request datagrams.
    assert!(stat("bytes_read").parse::<u64>().unwrap() > 20);
}

/// `-U 0` (the default) serves no UDP (`-s` neither: see the config tests).
#[test]
fn udp_is_off_by_default() {
    let server = Server::ferrocached(&[]);
    assert_eq!(server.udp_port(), None);
}

/// Junk in every shape (short, multi-datagram, text, binary magic with any header, huge declared
/// lengths) neither stops a UDP reader nor gets a reply that breaks the framing.
#[test]
fn junk_datagrams_leave_the_reader_serving() {
    let server = Server::ferrocached(&["-U", "-1", "-t", "1", "-I", "2m", "-m", "8"]);
    let mut udp = Udp::new(&server);
    // A fixed xorshift stream: the same junk every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces: [&[u8]; 8] = [
        b"get ",
        b"set k 0 0 ",
        b"\r\n",
        b"mg k v q\r\n",
        b"gat 1 k k k\r\n",
        b"\x80\x01\x00\x01\x08\x00\x00\x00\xff\xff\xff\xff",
        b"\x80",
        b"999999999999999999999 ",
    ];
    for i in 0..2000u16 {
        let mut datagram = header(i, (next() % 3) as u16, (next() % 3) as u16, 0);
        datagram.truncate(if next() % 20 == 0 {
            (next() % 8) as usize
        } else {
            8
        });
        for _ in 0..next() % 12 {
            if next() % 2 == 0 {
                datagram.extend_from_slice(pieces[(next() % 8) as usize]);
            } else {
                datagram.extend((0..next() % 40).map(|_| next() as u8));
            }
        }
        udp.send_raw(&datagram);
        if i % 200 == 0 {
            // Whatever came back so far is framed, and the reader still answers.
            while let Some(((_, seq, total, reserved), _)) = {
                udp.socket
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("timeout");
                udp.try_recv()
            } {
                assert!(seq < total && reserved == 0, "{seq} of {total}");
            }
            udp.socket
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
        }
    }
    let version = udp.exchange(b"version\r\n");
    assert!(
        version
            .iter()
            .any(|(_, payload)| payload.starts_with(b"VERSION ")),
        "the reader still answers"
    );
    let mut c = server.connect();
    assert!(c.line("version\r\n").starts_with("VERSION "));
}

/// A UDP port another process holds is refused at start, as memcached refuses it: the sockets
/// ferrocached binds with SO_REUSEPORT must not join those of another server that did too.
#[test]
fn a_udp_port_in_use_fails_the_start() {
    use socket2::{Domain, Socket, Type};
    let holder = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
    holder.set_reuse_port(true).expect("SO_REUSEPORT");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    holder.bind(&any.into()).expect("bind");
    let port = holder
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet")
        .port()
        .to_string();
    let mut child = std::process::Command::new(ferrocache_testkit::ferrocached_bin())
        .args(["-p", "-1", "-l", "127.0.0.1", "-U", &port])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ferrocached");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferrocached started on a UDP port in use");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(71), "{stderr}");
    assert!(stderr.contains("failed to listen on UDP port"), "{stderr}");
}

#[test]
fn stats_conns_lists_the_listener_and_the_udp_sockets_as_memcached() {
    // memcached lists its listening socket and its UDP "connections" (one per worker thread)
    // before the clients; a UDP socket notes when it last read a command, and a client shows
    // whether it has sent anything yet. Ids (file descriptors there) and ports differ.
    let mut listings = Vec::new();
    for flavor in [Flavor::Memcached, Flavor::Ferrocached] {
        let server = Server::start(flavor, &["-U", "-1", "-t", "2"]);
        std::thread::sleep(Duration::from_millis(2100));
        let udp = Udp::new(&server);
        // One datagram (exchange's sentinel would be a second, which memcached may hand to its
        // other UDP "connection": they share one socket).
        let mut get = header(7, 0, 1, 0);
        get.extend_from_slice(b"get nothing\r\n");
        udp.send_raw(&get);
        assert_eq!(udp.recv().1, b"END\r\n");
        let _silent = server.connect();
        let mut spoke = server.connect();
        spoke.line("version\r\n");
        let mut asking = server.connect();
        let reply = asking.request("stats conns\r\n", "END\r\n");
        // Each id's fields, in order, with ports and the id itself left out.
        let mut entries: Vec<(String, Vec<String>)> = Vec::new();
        for line in reply.lines().filter_map(|l| l.strip_prefix("STAT ")) {
            let (key, value) = line.split_once(' ').expect("STAT name value");
            let (id, field) = key.split_once(':').expect("id:field");
            let value = match (field, value.rsplit_once(':')) {
                // The servers started over 2 s ago; whatever was used since, a few ms ago (a
                // clock tick may fall in between).
                ("secs_since_last_cmd", _) => {
                    let secs: u32 = value.parse().expect("seconds");
                    (if secs >= 2 { "old" } else { "recent" }).to_string()
                }
                (_, Some((host, port))) if port.parse::<u16>().is_ok() => format!("{host}:PORT"),
                _ => value.to_string(),
            };
            match entries.last_mut() {
                Some((last, fields)) if last == id => fields.push(format!("{field} {value}")),
                _ => entries.push((id.to_string(), vec![format!("{field} {value}")])),
            }
        }
        listings.push(entries.into_iter().map(|(_, f)| f).collect::<Vec<_>>());
    }
    // The order of file descriptors is memcached's business (here a client's came before its
    // listener's), and which UDP socket read the get the kernel's: compare the sets.
    let sorted = |listing: &Vec<Vec<String>>| {
        let mut listing = listing.clone();
        listing.sort();
        listing
    };
    let (memcached, ferrocached) = (&listings[0], &mut listings[1].clone());
    assert_eq!(sorted(ferrocached), sorted(memcached));
    // Ours: the listener, the UDP sockets, then the clients as they came.
    ferrocached[1..3].sort_by_key(|fields| fields[3] != "secs_since_last_cmd recent");
    assert_eq!(ferrocached[2][3], "secs_since_last_cmd old");
    let text = |fields: &[&str]| fields.iter().map(|f| f.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ferrocached[0],
        text(&[
            "addr tcp:127.0.0.1:PORT",
            "state conn_listening",
            "secs_since_last_cmd old"
        ])
    );
    assert_eq!(
        ferrocached[1],
        text(&[
            "UDP UDP",
            "addr udp:127.0.0.1:PORT",
            "state conn_read",
            "secs_since_last_cmd recent"
        ])
    );
    assert_eq!(ferrocached.len(), 6);
    assert_eq!(ferrocached[3][2], "state conn_new_cmd");
    assert_eq!(ferrocached[4][2], "state conn_read");
    assert_eq!(ferrocached[5][2], "state conn_parse_cmd");
}
