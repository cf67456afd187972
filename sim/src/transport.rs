//! Ordered delivery over madsim's datagrams, as Kafka's TCP connections give.
//!
//! madsim delivers each message after an independent random latency and may
//! reorder a node's mailbox, but Kafka relies on per-connection order (a
//! producer's pipelined requests arrive in the order sent). Each message carries
//! its sender's incarnation and a per-link sequence number; the receiver hands
//! messages over in sequence order, holds early ones until the gap fills, and
//! gives a gap up as lost (a broken connection) after `GAP_TIMEOUT`. A message
//! that arrives after its gap was given up is dropped, as a reset connection
//! would drop it.

use kafsim_model::protocol::Message;
use kafsim_model::NodeId;
use std::collections::BTreeMap;
use std::time::Duration;

/// Longer than the spread of the simulated link latency, so a message that is
/// merely late fills its gap in time.
pub const GAP_TIMEOUT: Duration = Duration::from_millis(20);

/// Sends a buggify fault point holds back (`crate::buggify`): fetch requests of
/// a lagging follower, fetch responses of a slow leader. Held messages to one
/// node leave in the order they were sent; other messages are not held behind
/// them, as Kafka's replica fetchers use connections of their own. Empty, and
/// free, unless buggify is on.
#[derive(Default)]
pub struct HeldSends {
    /// (release time in microseconds, destination, message), in send order.
    queue: Vec<(u64, NodeId, Message)>,
    /// Per destination, the release time of its last held message.
    held_until: BTreeMap<NodeId, u64>,
}

impl HeldSends {
    /// Holds `message` for `delay` microseconds (and behind what is already held
    /// for `to`); hands it back when there is no delay.
    pub fn hold(&mut self, now: u64, to: NodeId, message: Message, delay: Option<u64>) -> Option<Message> {
        let delay = match delay {
            None => return Some(message),
            Some(delay) => delay,
        };
        let release = self.held_until.get(&to).copied().unwrap_or(0).max(now + delay);
        self.held_until.insert(to, release);
        self.queue.push((release, to, message));
        None
    }

    /// Moves what may go at `now` to `out`, keeping each destination's order.
    pub fn release(&mut self, now: u64, out: &mut Vec<(NodeId, Message)>) {
        if self.queue.iter().all(|(release, _, _)| *release > now) {
            return;
        }
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue).into_iter().partition(|(release, _, _)| *release <= now);
        self.queue = waiting;
        out.extend(due.into_iter().map(|(_, to, message)| (to, message)));
        self.held_until.retain(|_, until| *until > now);
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.queue.iter().map(|(release, _, _)| *release).min()
    }
}

#[derive(Debug)]
pub struct Envelope {
    pub from: NodeId,
    pub incarnation: u64,
    pub sequence: u64,
    pub message: Message,
}

/// The value kept for `node` in a list sorted by node, made by `new` when the
/// node is not there yet. A node talks to a handful of peers, so a sorted list
/// is quicker to search than a tree, and walks in the same order.
fn peer_entry<V>(list: &mut Vec<(NodeId, V)>, node: NodeId, new: impl FnOnce() -> V) -> &mut V {
    let index = list.binary_search_by_key(&node, |(known, _)| *known).unwrap_or_else(|index| {
        list.insert(index, (node, new()));
        index
    });
    &mut list[index].1
}

/// The sending half: per-destination sequence numbers (`peer_entry`).
#[derive(Default)]
pub struct Outbox {
    next_sequence: Vec<(NodeId, u64)>,
}

impl Outbox {
    pub fn stamp(&mut self, from: NodeId, incarnation: u64, to: NodeId, message: Message) -> Envelope {
        let next = peer_entry(&mut self.next_sequence, to, || 0);
        let sequence = *next;
        *next += 1;
        Envelope { from, incarnation, sequence, message }
    }
}

struct Link {
    incarnation: u64,
    expected: u64,
    early: BTreeMap<u64, Box<Envelope>>,
    /// When the oldest gap will be given up.
    gap_deadline: Option<u64>,
}

/// The receiving half, one link per sending node.
#[derive(Default)]
pub struct Inbox {
    /// Sorted by sending node (`peer_entry`), so gaps expire in the order a
    /// map keyed by node would give.
    links: Vec<(NodeId, Link)>,
    /// How many links wait on a gap; while none does, there is nothing to expire.
    gapped: usize,
}

impl Inbox {
    /// Takes one arrival at `now` (microseconds); returns what can be delivered, in order.
    /// Envelopes stay boxed from the sender's `send` to the handler: a message is
    /// big enough that each copy on the way shows in a run's time.
    pub fn accept(&mut self, now: u64, envelope: Box<Envelope>, deliver: &mut Vec<Box<Envelope>>) {
        let from = envelope.from;
        let link = peer_entry(&mut self.links, from, || Link { incarnation: envelope.incarnation, expected: 0, early: BTreeMap::new(), gap_deadline: None });
        let was_gapped = link.gap_deadline.is_some();
        Self::accept_on(link, now, envelope, deliver);
        self.gapped = self.gapped + usize::from(link.gap_deadline.is_some()) - usize::from(was_gapped);
    }

    // Boxes in a Vec on purpose: the envelope stays in the allocation it was sent in.
    #[allow(clippy::vec_box)]
    fn accept_on(link: &mut Link, now: u64, envelope: Box<Envelope>, deliver: &mut Vec<Box<Envelope>>) {
        if envelope.incarnation != link.incarnation {
            if envelope.incarnation < link.incarnation {
                return;
            }
            // The sender restarted: a new connection, numbered from zero.
            *link = Link { incarnation: envelope.incarnation, expected: 0, early: BTreeMap::new(), gap_deadline: None };
        }
        if envelope.sequence < link.expected {
            return;
        }
        if envelope.sequence == link.expected && link.early.is_empty() {
            // In order, nothing held: the common case needs no buffering.
            deliver.push(envelope);
            link.expected += 1;
            link.gap_deadline = None;
            return;
        }
        link.early.insert(envelope.sequence, envelope);
        Self::drain(link, deliver);
        if !link.early.is_empty() && link.gap_deadline.is_none() {
            link.gap_deadline = Some(now + GAP_TIMEOUT.as_micros() as u64);
        }
    }

    #[allow(clippy::vec_box)]
    fn drain(link: &mut Link, deliver: &mut Vec<Box<Envelope>>) {
        while let Some(envelope) = link.early.remove(&link.expected) {
            deliver.push(envelope);
            link.expected += 1;
            link.gap_deadline = None;
        }
    }

    pub fn next_deadline(&self) -> Option<u64> {
        if self.gapped == 0 {
            return None;
        }
        self.links.iter().filter_map(|(_, link)| link.gap_deadline).min()
    }

    /// Gives up gaps whose time ran out and delivers what waited behind them.
    pub fn expire(&mut self, now: u64, deliver: &mut Vec<Box<Envelope>>) {
        if self.gapped == 0 {
            return;
        }
        for (_, link) in &mut self.links {
            if link.gap_deadline.is_some_and(|deadline| deadline <= now) {
                link.gap_deadline = None;
                self.gapped -= 1;
                if let Some(first) = link.early.keys().next().copied() {
                    link.expected = first;
                }
                Self::drain(link, deliver);
                if !link.early.is_empty() {
                    link.gap_deadline = Some(now + GAP_TIMEOUT.as_micros() as u64);
                    self.gapped += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(sequence: u64, incarnation: u64) -> Box<Envelope> {
        Box::new(Envelope { from: NodeId(1), incarnation, sequence, message: Message::MetadataRequest { correlation_id: sequence } })
    }

    fn ids(delivered: &[Box<Envelope>]) -> Vec<u64> {
        delivered
            .iter()
            .map(|envelope| match &envelope.message {
                Message::MetadataRequest { correlation_id } => *correlation_id,
                _ => unreachable!(),
            })
            .collect()
    }

    fn held_ids(released: &[(NodeId, Message)]) -> Vec<u64> {
        released
            .iter()
            .map(|(_, message)| match message {
                Message::MetadataRequest { correlation_id } => *correlation_id,
                _ => unreachable!(),
            })
            .collect()
    }

    /// Boxing an envelope for the network copies it once more; within 128
    /// bytes that copy is a few inline moves instead of a call to memcpy.
    #[test]
    fn an_envelope_fits_in_128_bytes() {
        assert!(std::mem::size_of::<Envelope>() <= 128, "Envelope grew to {} bytes", std::mem::size_of::<Envelope>());
    }

    #[test]
    fn reordered_arrivals_are_delivered_in_order() {
        let mut inbox = Inbox::default();
        let mut out = Vec::new();
        inbox.accept(0, envelope(1, 0), &mut out);
        assert!(out.is_empty());
        inbox.accept(5, envelope(0, 0), &mut out);
        assert_eq!(ids(&out), vec![0, 1]);
    }

    #[test]
    fn a_lost_message_is_given_up_and_a_late_one_dropped() {
        let mut inbox = Inbox::default();
        let mut out = Vec::new();
        inbox.accept(0, envelope(1, 0), &mut out);
        inbox.expire(GAP_TIMEOUT.as_micros() as u64, &mut out);
        assert_eq!(ids(&out), vec![1]);
        inbox.accept(30_000, envelope(0, 0), &mut out);
        assert_eq!(ids(&out), vec![1]);
    }

    #[test]
    fn held_sends_keep_each_destinations_order() {
        let mut held = HeldSends::default();
        let message = |id| Message::MetadataRequest { correlation_id: id };
        assert!(held.hold(0, NodeId(2), message(0), None).is_some(), "no delay: it goes at once");
        assert!(held.hold(0, NodeId(2), message(1), Some(100)).is_none());
        assert!(held.hold(10, NodeId(2), message(2), Some(20)).is_none(), "a shorter delay still waits behind the held one");
        assert!(held.hold(10, NodeId(2), message(3), None).is_some(), "an undelayed message is not held behind");
        assert!(held.hold(10, NodeId(3), message(4), Some(5)).is_none());
        assert_eq!(held.next_deadline(), Some(15));
        let mut out = Vec::new();
        held.release(99, &mut out);
        assert_eq!(held_ids(&out), vec![4]);
        held.release(100, &mut out);
        assert_eq!(held_ids(&out), vec![4, 1, 2]);
        assert_eq!(held.next_deadline(), None);
    }

    proptest::proptest! {
        /// The count of gapped links that lets an idle inbox skip its scans
        /// always agrees with the links themselves.
        #[test]
        fn the_gap_count_agrees_with_the_links(steps in proptest::collection::vec((0u32..3, 0u64..6, 0u64..2, proptest::bool::ANY), 1..60)) {
            let mut inbox = Inbox::default();
            let mut out = Vec::new();
            let mut now = 0;
            for (from, sequence, incarnation, expire) in steps {
                now += 7_000;
                if expire {
                    inbox.expire(now, &mut out);
                } else {
                    let mut arrival = envelope(sequence, incarnation);
                    arrival.from = NodeId(from);
                    inbox.accept(now, arrival, &mut out);
                }
                let scanned = inbox.links.iter().filter_map(|(_, link)| link.gap_deadline).min();
                proptest::prop_assert_eq!(inbox.gapped, inbox.links.iter().filter(|(_, link)| link.gap_deadline.is_some()).count());
                proptest::prop_assert_eq!(inbox.next_deadline(), scanned);
            }
        }
    }

    #[test]
    fn a_restarted_sender_starts_a_new_connection() {
        let mut inbox = Inbox::default();
        let mut out = Vec::new();
        inbox.accept(0, envelope(0, 0), &mut out);
        inbox.accept(0, envelope(1, 0), &mut out);
        inbox.accept(0, envelope(0, 1), &mut out);
        assert_eq!(ids(&out), vec![0, 1, 0]);
    }
}
