//! A tiny DNS server the test controls: UDP on a loopback port, answering `A` queries for
//! the names it is told with a 1-second TTL, `NXDOMAIN` for the rest (and an empty answer
//! for other record types of a known name). Built on `hickory-proto` (through
//! `hickory_resolver::proto`), the library bffgate's own resolver speaks.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The TTL of every answer, in seconds.
pub const TTL: u32 = 1;

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    names: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
    queries: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Binds `127.0.0.1:0` and answers in a background task.
    pub async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("dns local addr");
        let names: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>> = Arc::default();
        let queries: Arc<Mutex<usize>> = Arc::default();
        let task = tokio::spawn(serve(socket, Arc::clone(&names), Arc::clone(&queries)));
        DnsServer {
            addr,
            names,
            queries,
            task,
        }
    }

    /// The `ip:port` to configure as a name server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on `name` resolves to `ips` (empty: does not resolve).
    pub fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        let mut names = self.names.lock().unwrap();
        if ips.is_empty() {
            names.remove(&fqdn(name));
        } else {
            names.insert(fqdn(name), ips.to_vec());
        }
    }

    /// How many queries it has answered.
    pub fn queries(&self) -> usize {
        *self.queries.lock().unwrap()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fqdn(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

async fn serve(
    socket: UdpSocket,
    names: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
    queries: Arc<Mutex<usize>>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        *queries.lock().unwrap() += 1;
        let mut reply = Message::new();
        reply
            .set_id(query.id())
            .set_message_type(MessageType::Response)
            .set_op_code(query.op_code())
            .set_recursion_desired(query.recursion_desired())
            .set_recursion_available(true)
            .set_authoritative(true);
        let known = names.lock().unwrap().clone();
        let mut code = ResponseCode::NoError;
        for q in query.queries() {
            reply.add_query(q.clone());
            let name = q.name().to_ascii().to_ascii_lowercase();
            match known.get(&fqdn(&name)) {
                None => code = ResponseCode::NXDomain,
                Some(ips) if q.query_type() == RecordType::A => {
                    for ip in ips {
                        reply.add_answer(Record::from_rdata(
                            q.name().clone(),
                            TTL,
                            RData::A(A(*ip)),
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        reply.set_response_code(code);
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}
