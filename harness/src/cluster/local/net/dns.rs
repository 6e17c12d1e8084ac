//! The cluster's DNS server: the names a pod resolves through `nameserver <kube-dns ClusterIP>`,
//! answered from the API server's Services and EndpointSlices.
//!
//! There is no container runtime to run CoreDNS in, so gauntlet answers itself. What it answers
//! follows the Kubernetes DNS specification (github.com/kubernetes/dns
//! `docs/specification.md`, schema 1.0.1); where the specification is silent it does what
//! CoreDNS's `kubernetes` plugin does with kubeadm's `pods insecure`:
//! - an endpoint without a hostname is named by its IP with dashes (`10-0-0-5`), and endpoints of
//!   ClusterIP Services get such names too (`endpointHostname`, `findServices`);
//! - an EndpointSlice endpoint is published while `conditions.ready` is true or unset
//!   (`endpointsliceReady`); `publishNotReadyAddresses` needs nothing here, because the
//!   EndpointSlice controller already marks those endpoints ready;
//! - a headless Service's SRV records carry the endpoints' ports (what a client dials on the
//!   pod), a ClusterIP Service's carry the Service's; priority 0, weight 100/n;
//! - `<a-b-c-d>.<ns>.pod.<zone>` answers its own IP, without checking that such a pod exists;
//! - a name whose Service has no records at all (a headless one with no ready endpoint) is
//!   NXDOMAIN, as the specification says.
//!
//! The zone is rebuilt whole on every change (a test cluster holds tens of Services) and handed to
//! the UDP loop through a watch channel, so queries are answered from an immutable snapshot. There
//! is no upstream resolver in the sandbox: names outside the zone are NXDOMAIN.
//!
//! UDP only. An answer larger than the client accepts (512 bytes, or its EDNS size up to 1232) is
//! sent truncated, which a resolver would retry over TCP; a test cluster's answers stay far below
//! that (a headless Service would need ~25 ready endpoints to exceed 512 bytes).

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use hickory_proto::op::{Edns, Message, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Label, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Every record's TTL, CoreDNS's default: short enough that a test sees a change within seconds.
pub const TTL: u32 = 5;

/// The schema version `dns-version.<zone>` answers.
const SCHEMA_VERSION: &str = "1.0.1";

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The largest UDP answer sent to an EDNS client: the 2020 DNS flag day's size, which no path
/// fragments.
const EDNS_PAYLOAD: u16 = 1232;

/// A plain DNS client accepts no more over UDP (RFC 1035 4.2.1).
const PLAIN_PAYLOAD: u16 = 512;

/// How many CNAMEs an answer follows inside the zone before giving up (a loop of ExternalNames).
const MAX_CNAME_CHAIN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("the cluster domain {domain:?} is not a DNS name: {reason}")]
    Domain { domain: String, reason: String },
    #[error("the cluster DNS socket failed while {step}: {source}")]
    Socket {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// What one name holds.
#[derive(Debug, Default, Clone)]
struct Node {
    addrs: Vec<IpAddr>,
    cname: Option<Name>,
    srv: Vec<Srv>,
    ptr: Vec<Name>,
    txt: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Srv {
    port: u16,
    target: Name,
}

/// The cluster zone (and the reverse names of its Services), built from the API's objects.
#[derive(Debug, Clone)]
pub struct Records {
    zone: Name,
    /// Keyed by fully-qualified name; `Name` hashes and compares case-insensitively, which is
    /// what DNS (and the specification) asks.
    nodes: HashMap<Name, Node>,
    soa: Record,
}

impl Records {
    /// A zone with no Services yet: what the server answers before the first list arrives.
    pub fn empty(domain: &str) -> Result<Records, DnsError> {
        Records::new::<Service, EndpointSlice>(domain, &[], &[])
    }

    /// Builds the zone `domain` (e.g. `cluster.local`). An object that cannot be named in DNS is
    /// left out rather than failing the whole zone: the API server validates names, so this only
    /// guards against a half-filled object.
    pub fn new<S: Borrow<Service>, E: Borrow<EndpointSlice>>(
        domain: &str,
        services: &[S],
        slices: &[E],
    ) -> Result<Records, DnsError> {
        let mut zone = ZoneBuilder::new(domain)?;
        let mut slices_of: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let slice = slice.borrow();
            let namespace = slice.metadata.namespace.as_deref();
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(svc)) = (namespace, service) {
                slices_of.entry((ns, svc.as_str())).or_default().push(slice);
            }
        }
        for service in services {
            let service = service.borrow();
            let key = (
                service.metadata.namespace.as_deref().unwrap_or_default(),
                service.metadata.name.as_deref().unwrap_or_default(),
            );
            let slices = slices_of.get(&key).map(Vec::as_slice).unwrap_or_default();
            zone.add_service(service, slices);
        }
        Ok(zone.finish())
    }

    /// The reply to one UDP datagram, or `None` when it deserves none (not a DNS query, or itself
    /// a response: answering those could make two servers loop). A query that parses badly gets
    /// FORMERR; the reply fits the size the client said it accepts, truncated (TC) otherwise.
    pub fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        if query.len() < 12 || query[2] & 0x80 != 0 {
            return None;
        }
        let request = match Message::from_vec(query) {
            Ok(m) => m,
            Err(_) => return Some(format_error(query)),
        };
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata = Metadata::response_from_request(&request.metadata);
        let limit = usize::from(request.edns.as_ref().map_or(PLAIN_PAYLOAD, |e| {
            e.max_payload().clamp(PLAIN_PAYLOAD, EDNS_PAYLOAD)
        }));
        if let Some(edns) = &request.edns {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_PAYLOAD).set_version(0);
            response.set_edns(ours);
            if edns.version() > 0 {
                response.metadata.response_code = ResponseCode::BADVERS;
                return encode(response, limit);
            }
        }
        if request.metadata.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return encode(response, limit);
        }
        let [question] = request.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return encode(response, limit);
        };
        response.add_query(question.clone());
        if question.query_class() != DNSClass::IN {
            response.metadata.response_code = ResponseCode::Refused;
            return encode(response, limit);
        }
        self.resolve(question, &mut response);
        encode(response, limit)
    }

    fn resolve(&self, question: &Query, out: &mut Message) {
        let qtype = question.query_type();
        let mut owner = question.name().clone();
        owner.set_fqdn(true);
        let in_zone = self.zone.zone_of(&owner);
        let Some(mut node) = self.node(&owner) else {
            out.metadata.response_code = ResponseCode::NXDomain;
            if in_zone {
                out.metadata.authoritative = true;
                out.add_authority(self.soa.clone());
            }
            return;
        };
        out.metadata.authoritative = true;
        // Answers carry the name as asked: resolvers that randomise the case check it.
        for _ in 0..MAX_CNAME_CHAIN {
            let Some(target) = node.cname.clone().filter(|_| qtype != RecordType::CNAME) else {
                break;
            };
            out.add_answer(Record::from_rdata(
                owner,
                TTL,
                RData::CNAME(CNAME(target.clone())),
            ));
            let next = self.node(&target);
            owner = target;
            match next {
                Some(n) => node = n,
                None => {
                    // Outside the zone there is nothing more to say; inside, the target is gone.
                    if self.zone.zone_of(&owner) {
                        out.metadata.response_code = ResponseCode::NXDomain;
                    }
                    return;
                }
            }
        }
        if node.cname.is_none() || qtype == RecordType::CNAME {
            self.push_answers(&owner, &node, qtype, out);
        }
        if out.answers.is_empty() && in_zone {
            out.add_authority(self.soa.clone());
        }
    }

    fn push_answers(&self, owner: &Name, node: &Node, qtype: RecordType, out: &mut Message) {
        let any = qtype == RecordType::ANY;
        let record = |data: RData| Record::from_rdata(owner.clone(), TTL, data);
        for ip in &node.addrs {
            match ip {
                IpAddr::V4(v4) if any || qtype == RecordType::A => {
                    out.add_answer(record(RData::A(A(*v4))));
                }
                IpAddr::V6(v6) if any || qtype == RecordType::AAAA => {
                    out.add_answer(record(RData::AAAA(AAAA(*v6))));
                }
                _ => {}
            }
        }
        if let Some(target) = &node.cname
            && (any || qtype == RecordType::CNAME)
        {
            out.add_answer(record(RData::CNAME(CNAME(target.clone()))));
        }
        if any || qtype == RecordType::SRV {
            let weight = u16::try_from(100 / node.srv.len().max(1))
                .unwrap_or(1)
                .max(1);
            let mut described: Vec<&Name> = Vec::new();
            for srv in &node.srv {
                out.add_answer(record(RData::SRV(SRV::new(
                    0,
                    weight,
                    srv.port,
                    srv.target.clone(),
                ))));
                // The additional section saves the client a lookup per target.
                if described.contains(&&srv.target) {
                    continue;
                }
                described.push(&srv.target);
                if let Some(target) = self.nodes.get(&srv.target) {
                    for ip in &target.addrs {
                        let data = match ip {
                            IpAddr::V4(v4) => RData::A(A(*v4)),
                            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                        };
                        out.add_additional(Record::from_rdata(srv.target.clone(), TTL, data));
                    }
                }
            }
        }
        if any || qtype == RecordType::PTR {
            for name in &node.ptr {
                out.add_answer(record(RData::PTR(PTR(name.clone()))));
            }
        }
        if any || qtype == RecordType::TXT {
            for text in &node.txt {
                out.add_answer(record(RData::TXT(TXT::new(vec![text.clone()]))));
            }
        }
        if (any || qtype == RecordType::SOA) && *owner == self.zone {
            out.add_answer(Record::from_rdata(
                owner.clone(),
                TTL,
                self.soa.data.clone(),
            ));
        }
    }

    /// The node at `name`, including the pod names made up on the fly.
    fn node(&self, name: &Name) -> Option<Cow<'_, Node>> {
        if let Some(node) = self.nodes.get(name) {
            return Some(Cow::Borrowed(node));
        }
        self.pod_node(name).map(Cow::Owned)
    }

    /// `<ip-with-dashes>.<namespace>.pod.<zone>` (the specification's deprecated but required
    /// pod records), and `<namespace>.pod.<zone>` as an empty name above them.
    fn pod_node(&self, name: &Name) -> Option<Node> {
        if !self.zone.zone_of(name) {
            return None;
        }
        let extra = usize::from(name.num_labels()) - usize::from(self.zone.num_labels());
        let labels: Vec<String> = name
            .iter()
            .take(extra)
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        match labels.as_slice() {
            [_namespace, pod] if pod == "pod" => Some(Node::default()),
            [ip, _namespace, pod] if pod == "pod" => {
                let ip = undash(ip)?;
                Some(Node {
                    addrs: vec![ip],
                    ..Node::default()
                })
            }
            _ => None,
        }
    }
}

/// An IP from its dashed form: four dash-separated parts are IPv4, anything else IPv6.
fn undash(label: &str) -> Option<IpAddr> {
    let text = if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".")
    } else {
        label.replace('-', ":")
    };
    text.parse().ok()
}

fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// A FORMERR reply for a datagram whose header is readable but whose body is not: the header is
/// all there is to echo.
fn format_error(query: &[u8]) -> Vec<u8> {
    let mut reply = vec![0u8; 12];
    reply[..2].copy_from_slice(&query[..2]);
    // QR set, the query's opcode and RD kept, RCODE 1 (FORMERR).
    reply[2] = 0x80 | (query[2] & 0x79);
    reply[3] = 1;
    reply
}

/// Encodes `message` into at most `limit` bytes: additional records go first (they are optional),
/// then every record, with TC set so that the client knows.
fn encode(mut message: Message, limit: usize) -> Option<Vec<u8>> {
    let result = (|| {
        let full = message.to_vec()?;
        if full.len() <= limit {
            return Ok(full);
        }
        message.additionals.clear();
        let smaller = message.to_vec()?;
        if smaller.len() <= limit {
            return Ok(smaller);
        }
        message.answers.clear();
        message.authorities.clear();
        message.metadata.truncation = true;
        message.to_vec()
    })();
    match result {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!("cluster DNS could not encode an answer: {e}");
            None
        }
    }
}

/// Gathers the nodes of one zone.
struct ZoneBuilder {
    zone: Name,
    nodes: HashMap<Name, Node>,
}

impl ZoneBuilder {
    fn new(domain: &str) -> Result<ZoneBuilder, DnsError> {
        let invalid = |reason: String| DnsError::Domain {
            domain: domain.to_string(),
            reason,
        };
        let mut zone =
            Name::from_ascii(domain.to_ascii_lowercase()).map_err(|e| invalid(e.to_string()))?;
        zone.set_fqdn(true);
        if zone.is_root() {
            return Err(invalid("the root is not a cluster domain".into()));
        }
        let mut builder = ZoneBuilder {
            zone,
            nodes: HashMap::new(),
        };
        builder.nodes.insert(builder.zone.clone(), Node::default());
        for fixed in ["svc", "pod"] {
            if let Some(name) = builder.name(&[fixed]) {
                builder.node(name);
            }
        }
        if let Some(name) = builder.name(&["dns-version"]) {
            builder.node(name).txt.push(SCHEMA_VERSION.to_string());
        }
        Ok(builder)
    }

    /// `labels` followed by the zone, or `None` when one is not a DNS label.
    fn name(&self, labels: &[&str]) -> Option<Name> {
        let mut name = self.zone.clone();
        for l in labels.iter().rev() {
            name = name.prepend_label(label(l)?).ok()?;
        }
        Some(name)
    }

    fn node(&mut self, name: Name) -> &mut Node {
        self.nodes.entry(name).or_default()
    }

    fn add_service(&mut self, service: &Service, slices: &[&EndpointSlice]) {
        let (Some(ns), Some(name), Some(spec)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
            service.spec.as_ref(),
        ) else {
            return;
        };
        let Some(fqdn) = self.name(&[name, ns, "svc"]) else {
            return;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            // External services cannot have endpoints: the CNAME is all there is.
            if let Some(target) = spec.external_name.as_deref().and_then(absolute_name) {
                self.node(fqdn).cname = Some(target);
            }
            return;
        }
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if !headless {
            let ips: Vec<IpAddr> = match &spec.cluster_ips {
                Some(ips) if !ips.is_empty() => ips.iter().filter_map(|i| i.parse().ok()).collect(),
                _ => spec
                    .cluster_ip
                    .iter()
                    .filter_map(|i| i.parse().ok())
                    .collect(),
            };
            if !ips.is_empty() {
                for ip in &ips {
                    self.node(fqdn.clone()).addrs.push(*ip);
                    self.node(Name::from(*ip)).ptr.push(fqdn.clone());
                }
                for port in spec.ports.iter().flatten() {
                    let Ok(number) = u16::try_from(port.port) else {
                        continue;
                    };
                    let protocol = port.protocol.as_deref().unwrap_or("TCP");
                    self.add_srv(&fqdn, port.name.as_deref(), protocol, number, &fqdn);
                }
            }
        }
        for slice in slices {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let ports: Vec<(Option<&str>, &str, u16)> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let number = u16::try_from(p.port?).ok().filter(|n| *n > 0)?;
                    Some((
                        p.name.as_deref(),
                        p.protocol.as_deref().unwrap_or("TCP"),
                        number,
                    ))
                })
                .collect();
            for endpoint in slice.endpoints.iter().filter(|e| ready(e)) {
                for ip in endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                {
                    let host = endpoint.hostname.clone().unwrap_or_else(|| dashed(ip));
                    let Some(host) = label(&host).and_then(|l| fqdn.prepend_label(l).ok()) else {
                        continue;
                    };
                    self.node(host.clone()).addrs.push(ip);
                    if headless {
                        self.node(fqdn.clone()).addrs.push(ip);
                        self.node(Name::from(ip)).ptr.push(host.clone());
                        for (port_name, protocol, number) in &ports {
                            self.add_srv(&fqdn, *port_name, protocol, *number, &host);
                        }
                    }
                }
            }
        }
    }

    /// An SRV record at the Service's name (all its ports) and, for a named port, at
    /// `_<port>._<proto>.<service>…`; unnamed ports have no such name (specification 2.3.2).
    fn add_srv(
        &mut self,
        service: &Name,
        port_name: Option<&str>,
        protocol: &str,
        port: u16,
        target: &Name,
    ) {
        let srv = Srv {
            port,
            target: target.clone(),
        };
        self.node(service.clone()).srv.push(srv.clone());
        let Some(port_name) = port_name.filter(|n| !n.is_empty()) else {
            return;
        };
        let protocol = format!("_{}", protocol.to_ascii_lowercase());
        let name = [format!("_{port_name}"), protocol]
            .iter()
            .rev()
            .try_fold(service.clone(), |n, l| n.prepend_label(label(l)?).ok());
        if let Some(name) = name {
            self.node(name).srv.push(srv);
        }
    }

    /// Sorts and dedups every node, and adds the empty names between the zone and its records
    /// (`<ns>.svc.<zone>` exists once a Service does): those are NODATA, not NXDOMAIN, which
    /// RFC 8020 resolvers would take as "nothing below".
    fn finish(mut self) -> Records {
        let names: Vec<Name> = self.nodes.keys().cloned().collect();
        for name in names {
            if !self.zone.zone_of(&name) {
                continue;
            }
            let mut parent = name.base_name();
            while parent.num_labels() > self.zone.num_labels() {
                self.nodes.entry(parent.clone()).or_default();
                parent = parent.base_name();
            }
        }
        for node in self.nodes.values_mut() {
            node.addrs.sort_unstable();
            node.addrs.dedup();
            node.srv.sort();
            node.srv.dedup();
            node.ptr.sort();
            node.ptr.dedup();
        }
        let soa = self.soa();
        Records {
            zone: self.zone,
            nodes: self.nodes,
            soa,
        }
    }

    /// The zone's SOA, sent with every negative answer so that resolvers cache it for `TTL`
    /// only (RFC 2308). Nothing transfers this zone, so the serial stays 1.
    fn soa(&self) -> Record {
        let mname = self
            .name(&["ns", "dns"])
            .unwrap_or_else(|| self.zone.clone());
        let rname = self
            .name(&["hostmaster"])
            .unwrap_or_else(|| self.zone.clone());
        let soa = SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL);
        Record::from_rdata(self.zone.clone(), TTL, RData::SOA(soa))
    }
}

/// One lower-cased DNS label; `None` for anything else (a dot would split it).
fn label(text: &str) -> Option<Label> {
    if text.contains('.') {
        return None;
    }
    Label::from_ascii(&text.to_ascii_lowercase()).ok()
}

/// An ExternalName as an absolute name: the API server stores it without the final dot.
fn absolute_name(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text.to_ascii_lowercase()).ok()?;
    name.set_fqdn(true);
    (!name.is_root()).then_some(name)
}

/// Per the EndpointSlice API, an unknown readiness is to be taken as ready.
fn ready(endpoint: &Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.ready)
        .unwrap_or(true)
}

/// Answers queries on `socket` from the latest `records`, until aborted. Returns only when the
/// socket itself fails; a reply that cannot be sent (the client went away) is dropped.
///
/// The caller binds `socket` (inside the cluster's network namespace, on the kube-dns ClusterIP).
pub async fn serve(
    socket: UdpSocket,
    records: watch::Receiver<Arc<Records>>,
) -> Result<(), DnsError> {
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // An ICMP error for an earlier reply surfaces on the next receive; it is not ours.
            Err(e) if transient(&e) => continue,
            Err(source) => {
                return Err(DnsError::Socket {
                    step: "receiving a query",
                    source,
                });
            }
        };
        let current = records.borrow().clone();
        let Some(reply) = current.answer(&buf[..len]) else {
            continue;
        };
        if let Err(e) = socket.send_to(&reply, peer).await {
            tracing::debug!(%peer, "cluster DNS reply not sent: {e}");
        }
    }
}

fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | Interrupted
            | WouldBlock
            | HostUnreachable
            | NetworkUnreachable
    )
}

/// Watches Services and EndpointSlices in every namespace and publishes a new zone on `tx` after
/// each change, once both lists are complete (a zone built from half a list would answer
/// NXDOMAIN for names that exist). Watch errors are retried with kube's default backoff. Returns
/// when nobody holds a receiver any more.
pub async fn follow(
    client: kube::Client,
    domain: String,
    tx: watch::Sender<Arc<Records>>,
) -> Result<(), DnsError> {
    Records::empty(&domain)?;
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let service_events = watcher(kube::Api::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(services_writer)
        .map(|e| (Kind::Services, e.map(|e| Change::of(&e))));
    let slice_events = watcher(kube::Api::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(slices_writer)
        .map(|e| (Kind::Slices, e.map(|e| Change::of(&e))));
    let mut events = futures::stream::select(service_events.boxed(), slice_events.boxed());
    let (mut services_listed, mut slices_listed) = (false, false);
    while let Some((kind, change)) = events.next().await {
        let change = match change {
            Ok(change) => change,
            Err(e) => {
                tracing::warn!("cluster DNS: watching {kind:?} failed, retrying: {e}");
                continue;
            }
        };
        if change == Change::Listed {
            match kind {
                Kind::Services => services_listed = true,
                Kind::Slices => slices_listed = true,
            }
        }
        if change == Change::None || !(services_listed && slices_listed) {
            continue;
        }
        let zone = Records::new(&domain, &services.state(), &slices.state())?;
        if tx.send(Arc::new(zone)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Services,
    Slices,
}

/// What a watch event means for the zone: the store only changes visibly on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    Object,
    Listed,
}

impl Change {
    fn of<K>(event: &watcher::Event<K>) -> Change {
        match event {
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => Change::Object,
            watcher::Event::InitDone => Change::Listed,
            watcher::Event::Init | watcher::Event::InitApply(_) => Change::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};
    use kube::api::ObjectMeta;

    use super::*;

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        }
    }

    fn service(ns: &str, name: &str, cluster_ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: meta(ns, name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port)| ServicePort {
                            name: name.map(Into::into),
                            port: *port,
                            protocol: Some("TCP".into()),
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn external(ns: &str, name: &str, target: &str) -> Service {
        Service {
            metadata: meta(ns, name),
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some(target.into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// `endpoints`: (IP, hostname, ready).
    fn slice(
        ns: &str,
        service: &str,
        ports: &[(&str, i32)],
        endpoints: &[(&str, Option<&str>, Option<bool>)],
    ) -> EndpointSlice {
        let mut metadata = meta(ns, &format!("{service}-abcde"));
        metadata.labels = Some(BTreeMap::from([(
            SERVICE_NAME_LABEL.to_string(),
            service.to_string(),
        )]));
        EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, hostname, ready)| Endpoint {
                    addresses: vec![ip.to_string()],
                    hostname: hostname.map(Into::into),
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| EndpointPort {
                        name: Some(name.to_string()),
                        port: Some(*port),
                        protocol: Some("TCP".into()),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
        }
    }

    /// A small cluster: the `kubernetes` Service, a ClusterIP Service with a named and an
    /// unnamed port, a headless one with three endpoints (one not ready), a headless one with no
    /// ready endpoint, and two ExternalNames (outside and inside the zone).
    fn cluster() -> Records {
        let services = [
            service(
                "default",
                "kubernetes",
                "10.96.0.1",
                &[(Some("https"), 443)],
            ),
            service(
                "shop",
                "web",
                "10.96.0.20",
                &[(Some("http"), 80), (None, 9090)],
            ),
            service("shop", "db", "None", &[(Some("postgres"), 5432)]),
            service("shop", "idle", "None", &[(Some("http"), 80)]),
            external("shop", "ext", "example.com"),
            external("shop", "alias", "web.shop.svc.cluster.local"),
        ];
        let slices = [
            slice(
                "shop",
                "web",
                &[("http", 8080)],
                &[("10.0.0.9", None, Some(true))],
            ),
            slice(
                "shop",
                "db",
                &[("postgres", 5433)],
                &[
                    ("10.0.0.5", Some("db-0"), Some(true)),
                    ("10.0.0.6", None, None),
                    ("10.0.0.7", Some("db-2"), Some(false)),
                ],
            ),
            slice(
                "shop",
                "idle",
                &[("http", 80)],
                &[("10.0.0.8", None, Some(false))],
            ),
        ];
        Records::new("cluster.local", &services, &slices).expect("valid domain")
    }

    fn query(name: &str, qtype: RecordType, edns: Option<(u16, u8)>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        if let Some((size, version)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size).set_version(version);
            m.set_edns(e);
        }
        m.to_vec().expect("encodes")
    }

    fn ask(records: &Records, name: &str, qtype: RecordType) -> Message {
        let q = query(name, qtype, None);
        let reply = records.answer(&q).expect("a reply");
        let reply = Message::from_vec(&reply).expect("a DNS message");
        assert_eq!(
            reply.metadata.id,
            Message::from_vec(&q).unwrap().metadata.id
        );
        assert_eq!(
            reply.metadata.message_type,
            hickory_proto::op::MessageType::Response
        );
        reply
    }

    fn addrs(m: &Message) -> Vec<IpAddr> {
        m.answers.iter().filter_map(|r| r.data.ip_addr()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn srvs(m: &Message) -> Vec<(u16, u16, u16, String)> {
        let mut out: Vec<_> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    fn is_soa_authority(m: &Message) -> bool {
        matches!(m.authorities.as_slice(), [r] if matches!(r.data, RData::SOA(_)) && r.ttl == TTL)
    }

    #[test]
    fn a_for_a_cluster_ip_service_is_its_cluster_ip_whatever_the_case() {
        let asked = "Web.SHOP.svc.Cluster.Local.";
        let m = ask(&cluster(), asked, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(addrs(&m), vec![ip("10.96.0.20")]);
        assert_eq!(m.answers[0].ttl, TTL);
        // The owner is the name as asked: resolvers randomising the case compare it.
        assert!(m.answers[0].name.eq_case(&name(asked)));
        let m = ask(
            &cluster(),
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
        );
        assert_eq!(addrs(&m), vec![ip("10.96.0.1")]);
    }

    #[test]
    fn aaaa_for_an_existing_name_is_nodata_with_the_soa() {
        let m = ask(&cluster(), "web.shop.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert!(
            m.metadata.authoritative,
            "Go takes a bare NOERROR without AA as a lame referral"
        );
        assert!(is_soa_authority(&m));
    }

    #[test]
    fn a_for_a_headless_service_lists_its_ready_endpoints() {
        let m = ask(&cluster(), "db.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        // 10.0.0.7 is not ready; 10.0.0.6's readiness is unknown, which counts as ready.
        assert_eq!(addrs(&m), vec![ip("10.0.0.5"), ip("10.0.0.6")]);
    }

    #[test]
    fn a_headless_service_without_ready_endpoints_does_not_exist() {
        let m = ask(&cluster(), "idle.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(is_soa_authority(&m));
    }

    #[test]
    fn endpoints_are_named_by_hostname_or_dashed_ip() {
        let r = cluster();
        let a = |n: &str| {
            let m = ask(&r, n, RecordType::A);
            (m.metadata.response_code, addrs(&m))
        };
        assert_eq!(
            a("db-0.db.shop.svc.cluster.local."),
            (ResponseCode::NoError, vec![ip("10.0.0.5")])
        );
        assert_eq!(
            a("10-0-0-6.db.shop.svc.cluster.local."),
            (ResponseCode::NoError, vec![ip("10.0.0.6")])
        );
        assert_eq!(
            a("db-2.db.shop.svc.cluster.local."),
            (ResponseCode::NXDomain, vec![])
        );
        // Endpoints of a ClusterIP Service are named too, as CoreDNS does.
        assert_eq!(
            a("10-0-0-9.web.shop.svc.cluster.local."),
            (ResponseCode::NoError, vec![ip("10.0.0.9")])
        );
    }

    #[test]
    fn srv_for_a_named_port_of_a_cluster_ip_service_points_at_the_service() {
        let m = ask(
            &cluster(),
            "_http._tcp.web.shop.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            srvs(&m),
            vec![(0, 100, 80, "web.shop.svc.cluster.local.".to_string())]
        );
        let extra: Vec<_> = m
            .additionals
            .iter()
            .filter_map(|r| r.data.ip_addr())
            .collect();
        assert_eq!(extra, vec![ip("10.96.0.20")]);
        // The Service's own name lists every port, the unnamed one included.
        let m = ask(&cluster(), "web.shop.svc.cluster.local.", RecordType::SRV);
        let ports: Vec<u16> = srvs(&m).iter().map(|s| s.2).collect();
        assert_eq!(ports, vec![80, 9090]);
        assert_eq!(
            m.additionals.len(),
            1,
            "one A record per target, not per port"
        );
        // Unnamed ports have no SRV name; the protocol is part of the name.
        let m = ask(
            &cluster(),
            "_http._udp.web.shop.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn srv_for_a_headless_service_lists_each_ready_endpoint_with_its_port() {
        let m = ask(
            &cluster(),
            "_postgres._TCP.db.shop.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            srvs(&m),
            vec![
                (
                    0,
                    50,
                    5433,
                    "10-0-0-6.db.shop.svc.cluster.local.".to_string()
                ),
                (0, 50, 5433, "db-0.db.shop.svc.cluster.local.".to_string()),
            ]
        );
        let mut extra: Vec<_> = m
            .additionals
            .iter()
            .map(|r| (r.name.to_ascii(), r.data.ip_addr()))
            .collect();
        extra.sort();
        assert_eq!(
            extra,
            vec![
                (
                    "10-0-0-6.db.shop.svc.cluster.local.".to_string(),
                    Some(ip("10.0.0.6"))
                ),
                (
                    "db-0.db.shop.svc.cluster.local.".to_string(),
                    Some(ip("10.0.0.5"))
                ),
            ]
        );
    }

    #[test]
    fn an_external_name_service_is_a_cname() {
        let m = ask(&cluster(), "ext.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(matches!(
            m.answers.as_slice(),
            [r] if r.data == RData::CNAME(CNAME(name("example.com.")))
        ));
        // A target inside the zone is followed.
        let m = ask(&cluster(), "alias.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.answers.len(), 2);
        assert_eq!(
            m.answers[0].data,
            RData::CNAME(CNAME(name("web.shop.svc.cluster.local.")))
        );
        assert_eq!(addrs(&m), vec![ip("10.96.0.20")]);
    }

    #[test]
    fn unknown_names_are_nxdomain_inside_and_outside_the_zone() {
        let r = cluster();
        for n in [
            "nope.shop.svc.cluster.local.",
            // What `options ndots:5` makes a resolver try first for a full name.
            "web.shop.svc.cluster.local.shop.svc.cluster.local.",
            "web.nowhere.svc.cluster.local.",
            "something.cluster.local.",
        ] {
            let m = ask(&r, n, RecordType::A);
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{n}");
            assert!(is_soa_authority(&m), "{n}");
        }
        for n in ["example.com.", "web.", "localhost."] {
            let m = ask(&r, n, RecordType::A);
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{n}");
            assert!(m.authorities.is_empty(), "{n}: not our zone, no SOA");
        }
    }

    #[test]
    fn names_above_records_exist_without_data() {
        let r = cluster();
        for n in [
            "shop.svc.cluster.local.",
            "svc.cluster.local.",
            "cluster.local.",
        ] {
            let m = ask(&r, n, RecordType::A);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{n}");
            assert!(m.answers.is_empty(), "{n}");
        }
        let m = ask(&r, "cluster.local.", RecordType::SOA);
        assert!(matches!(m.answers.as_slice(), [a] if matches!(a.data, RData::SOA(_))));
    }

    #[test]
    fn edns_queries_get_an_opt_record_and_unknown_versions_badvers() {
        let r = cluster();
        let q = query(
            "web.shop.svc.cluster.local.",
            RecordType::A,
            Some((4096, 0)),
        );
        let m = Message::from_vec(&r.answer(&q).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addrs(&m), vec![ip("10.96.0.20")]);
        let edns = m.edns.as_ref().expect("an OPT record in the reply");
        assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
        assert_eq!(edns.version(), 0);

        let q = query(
            "web.shop.svc.cluster.local.",
            RecordType::A,
            Some((4096, 1)),
        );
        let m = Message::from_vec(&r.answer(&q).unwrap()).unwrap();
        // 16 on the wire; hickory decodes it as BADSIG, the TSIG meaning of the same number.
        assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS");
        assert!(
            m.edns.is_some(),
            "an extended RCODE travels in the OPT record"
        );
        assert!(m.answers.is_empty());

        // Without EDNS, no OPT record.
        let m = ask(&r, "web.shop.svc.cluster.local.", RecordType::A);
        assert!(m.edns.is_none());
    }

    #[test]
    fn answers_larger_than_the_client_accepts_are_truncated() {
        let endpoints: Vec<String> = (1..=60).map(|i| format!("10.1.0.{i}")).collect();
        let endpoints: Vec<_> = endpoints
            .iter()
            .map(|ip| (ip.as_str(), None, Some(true)))
            .collect();
        let r = Records::new(
            "cluster.local",
            &[service("shop", "big", "None", &[(Some("http"), 80)])],
            &[slice("shop", "big", &[("http", 80)], &endpoints)],
        )
        .unwrap();
        let asked = "big.shop.svc.cluster.local.";
        let plain = r.answer(&query(asked, RecordType::A, None)).unwrap();
        assert!(plain.len() <= 512);
        let plain = Message::from_vec(&plain).unwrap();
        assert!(plain.metadata.truncation);
        assert!(plain.answers.is_empty());
        let edns = r
            .answer(&query(asked, RecordType::A, Some((1232, 0))))
            .unwrap();
        assert!(edns.len() <= 1232);
        let edns = Message::from_vec(&edns).unwrap();
        assert!(!edns.metadata.truncation);
        assert_eq!(edns.answers.len(), 60);
    }

    #[test]
    fn reverse_names_point_at_services_and_headless_endpoints() {
        let r = cluster();
        let ptr = |n: &str| {
            let m = ask(&r, n, RecordType::PTR);
            m.answers
                .iter()
                .filter_map(|a| match &a.data {
                    RData::PTR(p) => Some(p.0.to_ascii()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ptr("20.0.96.10.in-addr.arpa."),
            vec!["web.shop.svc.cluster.local."]
        );
        assert_eq!(
            ptr("5.0.0.10.in-addr.arpa."),
            vec!["db-0.db.shop.svc.cluster.local."]
        );
        let m = ask(&r, "99.0.0.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn the_schema_version_and_pod_names_answer() {
        let r = cluster();
        let m = ask(&r, "dns-version.cluster.local.", RecordType::TXT);
        assert!(matches!(
            m.answers.as_slice(),
            [a] if a.data == RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()]))
        ));
        let m = ask(&r, "10-0-0-42.shop.pod.cluster.local.", RecordType::A);
        assert_eq!(addrs(&m), vec![ip("10.0.0.42")]);
        let m = ask(&r, "fd00--1.shop.pod.cluster.local.", RecordType::AAAA);
        assert_eq!(addrs(&m), vec![ip("fd00::1")]);
        let m = ask(&r, "not-an-ip.shop.pod.cluster.local.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn malformed_datagrams_get_formerr_or_nothing() {
        let r = cluster();
        assert_eq!(r.answer(&[1, 2, 3]), None);
        // A response is never answered.
        let reply = r
            .answer(&query("web.shop.svc.cluster.local.", RecordType::A, None))
            .unwrap();
        assert_eq!(r.answer(&reply), None);
        // A header announcing a question that is not there.
        let header = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let m = Message::from_vec(&r.answer(&header).unwrap()).unwrap();
        assert_eq!(m.metadata.id, 0xabcd);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert!(m.metadata.recursion_desired);
        // Two questions in one query.
        let mut two = Message::query();
        two.add_query(Query::query(name("a.cluster.local."), RecordType::A));
        two.add_query(Query::query(name("b.cluster.local."), RecordType::A));
        let m = Message::from_vec(&r.answer(&two.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // Another opcode.
        let mut notify = Message::new(7, hickory_proto::op::MessageType::Query, OpCode::Notify);
        notify.add_query(Query::query(name("cluster.local."), RecordType::SOA));
        let m = Message::from_vec(&r.answer(&notify.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn a_domain_that_is_not_a_name_is_refused() {
        assert!(Records::empty("cluster.local").is_ok());
        for bad in ["", ".", "a..b", "ünïcode.local"] {
            assert!(
                matches!(Records::empty(bad), Err(DnsError::Domain { .. })),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn serves_the_latest_records_over_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = watch::channel(Arc::new(cluster()));
        let task = tokio::spawn(serve(server, rx));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(addr).await.unwrap();
        let round_trip = |q: Vec<u8>| {
            let client = &client;
            async move {
                client.send(&q).await.unwrap();
                let mut buf = vec![0u8; 2048];
                let n = tokio::time::timeout(Duration::from_secs(10), client.recv(&mut buf))
                    .await
                    .expect("a reply within 10 s")
                    .unwrap();
                Message::from_vec(&buf[..n]).unwrap()
            }
        };
        let asked = "web.shop.svc.cluster.local.";
        let m = round_trip(query(asked, RecordType::A, Some((1232, 0)))).await;
        assert_eq!(addrs(&m), vec![ip("10.96.0.20")]);
        assert!(m.edns.is_some());

        // Garbage gets no reply, and does not stop the server.
        client.send(&[0u8; 3]).await.unwrap();

        let moved = Records::new(
            "cluster.local",
            &[service("shop", "web", "10.96.0.21", &[(Some("http"), 80)])],
            &[] as &[EndpointSlice],
        )
        .unwrap();
        tx.send(Arc::new(moved)).unwrap();
        let m = round_trip(query(asked, RecordType::A, None)).await;
        assert_eq!(addrs(&m), vec![ip("10.96.0.21")]);
        let m = round_trip(query("db.shop.svc.cluster.local.", RecordType::A, None)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        task.abort();
    }
}
