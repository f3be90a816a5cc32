//! Group commit of issuances. A CA acknowledges a certificate only once it is on stable
//! storage, and a flush with its `fdatasync` costs as much as the rest of the store's work
//! together. So concurrent issuances are gathered: one thread at a time (the leader) takes
//! every issuance waiting, stores them in one transaction, flushes once and hands each
//! caller its own outcome; callers arriving meanwhile queue for the next round, and the
//! leader passes the lead to the first of them. With one caller at a time nothing waits
//! and no thread is woken: the caller is its own leader.
//!
//! The leader is a caller's thread, not a dedicated writer thread, because on this kind of
//! machine waking another thread costs tens of microseconds per request (see
//! `ops/BENCHMARKS.md`); a queued caller is woken exactly once, with its outcome or with
//! the lead.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::certs::{CertRecord, Inserted, IssueJob};
use super::Store;
use crate::error::{Error, Result};

/// What one issuance gets back: the outcome and its records (with their revision set).
pub type Committed = Result<(Inserted, Vec<CertRecord>)>;

/// The queue of issuances waiting for the next commit.
#[derive(Default)]
pub(super) struct GroupCommit {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Arc<Slot>>,
    /// A leader is committing (or has been handed the lead and is about to).
    leading: bool,
}

/// One caller's place in the queue.
struct Slot {
    job: Mutex<Option<IssueJob>>,
    state: Mutex<SlotState>,
    woken: Condvar,
}

enum SlotState {
    Waiting,
    /// Take every waiting issuance (this one included) and commit them.
    Lead,
    Done(Committed),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; go on with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Slot {
    fn set(&self, state: SlotState) {
        *lock(&self.state) = state;
        self.woken.notify_one();
    }
}

impl Store {
    /// Stores one issuance and makes it durable before returning (see the module doc).
    pub fn issue_durably(&self, job: IssueJob) -> Committed {
        let slot = Arc::new(Slot {
            job: Mutex::new(Some(job)),
            state: Mutex::new(SlotState::Waiting),
            woken: Condvar::new(),
        });
        {
            let mut queue = lock(&self.commits.queue);
            queue.waiting.push(slot.clone());
            if !queue.leading {
                queue.leading = true;
                drop(queue);
                slot.set(SlotState::Lead);
            }
        }
        loop {
            let mut state = lock(&slot.state);
            while matches!(*state, SlotState::Waiting) {
                state = slot
                    .woken
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            match std::mem::replace(&mut *state, SlotState::Waiting) {
                SlotState::Done(outcome) => return outcome,
                SlotState::Lead => {
                    drop(state);
                    self.lead();
                }
                SlotState::Waiting => {}
            }
        }
    }

    /// Commits every waiting issuance, then passes the lead on (or gives it up).
    fn lead(&self) {
        let batch = std::mem::take(&mut lock(&self.commits.queue).waiting);
        let mut round = Round {
            store: self,
            slots: batch,
            finished: false,
        };
        round.commit();
    }

    /// Stores the jobs in one transaction and flushes once. When the shared transaction
    /// fails as a whole, each job is retried on its own, so each caller gets its own error
    /// (an audit log that cannot be appended to, a full disk) rather than a neighbour's.
    fn commit_jobs(&self, jobs: Vec<IssueJob>) -> Vec<Committed> {
        match self.insert_batch(&jobs) {
            Ok(outcomes) => {
                let stored = outcomes
                    .iter()
                    .any(|o| matches!(o, Ok(Inserted::Stored(_))));
                let flushed = if stored { self.flush() } else { Ok(()) };
                jobs.into_iter()
                    .zip(outcomes)
                    .map(|(job, outcome)| match (outcome, &flushed) {
                        (Ok(Inserted::Stored(_)), Err(e)) => Err(same_failure(e)),
                        (Ok(inserted), _) => Ok(with_revision(inserted, job.records)),
                        (Err(e), _) => Err(e),
                    })
                    .collect()
            }
            Err(e) if jobs.len() == 1 => vec![Err(e)],
            Err(_) => jobs
                .into_iter()
                .map(|job| {
                    let mut one = self.commit_jobs(vec![job]);
                    one.pop().unwrap_or_else(|| Err(lost()))
                })
                .collect(),
        }
    }
}

/// One leader's round: commits its batch and, whatever happens (even a panic), answers
/// every caller of the batch and passes the lead on.
struct Round<'a> {
    store: &'a Store,
    slots: Vec<Arc<Slot>>,
    finished: bool,
}

impl Round<'_> {
    fn commit(&mut self) {
        let jobs: Vec<IssueJob> = self
            .slots
            .iter()
            .filter_map(|slot| lock(&slot.job).take())
            .collect();
        let outcomes = self.store.commit_jobs(jobs);
        for (slot, outcome) in self.slots.iter().zip(outcomes) {
            slot.set(SlotState::Done(outcome));
        }
        self.finished = true;
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        if !self.finished {
            for slot in &self.slots {
                slot.set(SlotState::Done(Err(lost())));
            }
        }
        let mut queue = lock(&self.store.commits.queue);
        match queue.waiting.first() {
            Some(next) => next.set(SlotState::Lead),
            None => queue.leading = false,
        }
    }
}

fn lost() -> Error {
    Error::Store("the issuance was not stored: the store writer failed".into())
}

fn with_revision(inserted: Inserted, mut records: Vec<CertRecord>) -> (Inserted, Vec<CertRecord>) {
    if let Inserted::Stored(revision) = inserted {
        for record in &mut records {
            record.revision = revision;
        }
    }
    (inserted, records)
}

/// The flush error of a batch, for each of its callers (errors are not `Clone`: they can
/// hold I/O errors).
fn same_failure(e: &Error) -> Error {
    match e {
        Error::StoreUnwritable(cause) => Error::StoreUnwritable(cause.clone()),
        Error::StoreCorrupted { path, detail } => Error::StoreCorrupted {
            path: path.clone(),
            detail: detail.clone(),
        },
        other => Error::Store(format!("flushing the store: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::OffsetDateTime;

    use super::super::certs::{CertRecord, Inserted, IssueJob, IssueWrite};
    use super::super::Store;
    use crate::audit::AuditDraft;
    use crate::error::Error;
    use crate::model::{CertUsage, Fingerprint, Holder, Serial, Usage};

    fn job(n: u8, holder: &str, organisation: &str) -> IssueJob {
        let holder = Holder::parse(holder).unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let der = vec![0x30, n];
        IssueJob {
            records: vec![CertRecord {
                record_version: 1,
                revision: 0,
                serial: Serial::from_bytes(&[0x10, n]),
                request_id: format!("r{n}"),
                dns_owner: holder.dns_owner(),
                holder: holder.clone(),
                usage: CertUsage::Dual,
                requested_usage: Usage::Dual,
                profile: "test".into(),
                level_of_assurance: "loa3".into(),
                category: "patient".into(),
                subscriber: Default::default(),
                registrar: "tester".into(),
                proofing: Default::default(),
                key: String::new(),
                key_origin: "csr".into(),
                not_before: at,
                not_after: at + time::Duration::days(1),
                fingerprint: Fingerprint::of(&der),
                issued_at: at,
                der,
            }],
            at,
            draft: AuditDraft::new(
                "tester",
                "cert.issue",
                holder.to_string(),
                serde_json::json!({}),
            ),
            write: IssueWrite::bulk(&holder, organisation, at),
        }
    }

    /// Queues `jobs` from their own threads while the test holds the lead, then commits
    /// them as one round: the batch a busy leader would find.
    fn one_round(store: &Arc<Store>, jobs: Vec<IssueJob>) -> Vec<super::Committed> {
        let count = jobs.len();
        store.commits.queue.lock().unwrap().leading = true;
        let callers: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let store = store.clone();
                std::thread::spawn(move || store.issue_durably(job))
            })
            .collect();
        while store.commits.queue.lock().unwrap().waiting.len() < count {
            std::thread::yield_now();
        }
        let waiting = std::mem::take(&mut store.commits.queue.lock().unwrap().waiting);
        // The batch is judged in queue order (whichever thread queued first).
        let mut round = super::Round {
            store,
            slots: waiting,
            finished: false,
        };
        round.commit();
        drop(round);
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    }

    #[test]
    fn a_batch_is_judged_in_order_and_a_refusal_leaves_the_others_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let revision_before = store.revision().unwrap();
        let outcomes = one_round(
            &store,
            vec![
                job(1, "a@example.org", "org-a"),
                job(2, "b@example.org", "org-b"),
                job(3, "c@example.org", "org-c"),
            ],
        );
        // Each caller got its own outcome, all stored with distinct revisions.
        let mut revisions: Vec<u64> = outcomes
            .iter()
            .map(|o| match o {
                Ok((Inserted::Stored(r), records)) => {
                    assert!(records.iter().all(|rec| rec.revision == *r));
                    *r
                }
                other => panic!("not stored: {other:?}"),
            })
            .collect();
        revisions.sort_unstable();
        revisions.dedup();
        assert_eq!(revisions.len(), 3);
        assert_eq!(store.revision().unwrap(), revision_before + 3);

        // A second round where one job claims a holder of another organisation and another
        // reuses a serial: those two are refused, the rest stored.
        let mut reused = job(4, "d@example.org", "org-d");
        reused.records[0].serial = Serial::from_bytes(&[0x10, 1]);
        let outcomes = one_round(
            &store,
            vec![
                job(5, "e@example.org", "org-e"),
                job(6, "a@example.org", "org-x"),
                reused,
                job(7, "f@example.org", "org-f"),
            ],
        );
        let stored = outcomes
            .iter()
            .filter(|o| matches!(o, Ok((Inserted::Stored(_), _))))
            .count();
        assert_eq!(stored, 2, "{outcomes:?}");
        assert!(outcomes
            .iter()
            .any(|o| matches!(o, Err(Error::HolderOwnedElsewhere(_)))));
        assert!(outcomes
            .iter()
            .any(|o| matches!(o, Err(Error::Conflict(m)) if m.contains("serial"))));
        // Nothing of the refused ones was written; every stored one is readable.
        assert!(store
            .cert(&Serial::from_bytes(&[0x10, 6]))
            .unwrap()
            .is_none());
        assert!(store
            .cert(&Serial::from_bytes(&[0x10, 4]))
            .unwrap()
            .is_none());
        assert!(store
            .cert(&Serial::from_bytes(&[0x10, 7]))
            .unwrap()
            .is_some());
        // The refused holder was not bound: a refusal leaves no binding behind.
        assert!(store.holder_binding("d@example.org").unwrap().is_none());
        assert!(store.holder_binding("f@example.org").unwrap().is_some());
        // One audit entry per stored issuance, chained.
        let entries: Vec<_> = store.audit_entries().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries.len(), 5);
    }

    #[test]
    fn two_issuances_for_one_new_holder_in_one_batch_bind_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let outcomes = one_round(
            &store,
            vec![
                job(1, "same@example.org", "org-a"),
                job(2, "same@example.org", "org-b"),
            ],
        );
        // The first binds the holder to org-a; the second is judged against that binding.
        let refused: Vec<_> = outcomes.iter().filter(|o| o.is_err()).collect();
        assert_eq!(refused.len(), 1, "{outcomes:?}");
        assert!(matches!(refused[0], Err(Error::HolderOwnedElsewhere(_))));
    }

    #[test]
    fn many_concurrent_callers_are_all_answered_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let callers: Vec<_> = (0..64u8)
            .map(|n| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.issue_durably(job(n, &format!("u{n}@example.org"), "org"))
                })
            })
            .collect();
        for c in callers {
            assert!(matches!(c.join().unwrap(), Ok((Inserted::Stored(_), _))));
        }
        assert_eq!(store.certs().count(), 64);
        // The lead was given up at the end.
        assert!(!store.commits.queue.lock().unwrap().leading);
    }
}
