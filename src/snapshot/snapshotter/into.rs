//! Restoring into the deployment a policy targets (`snapshot restore ID --into`): the RDB
//! streamed from the destination, checked, decrypted and decompressed on the fly ([`Snapshotter::payload`]),
//! loaded into one instance through the one-shot master ([`crate::snapshot::seed`]), which is
//! then recorded as master at a new epoch and promoted while the others resync from it.
//!
//! One actor at a time: everything that changes roles happens under a claim on the durable
//! record, the same one a failover takes (see `docs/failover.md`), renewed while the load runs
//! and released at the end, so a running daemon leaves the fleet's roles alone meanwhile, and a
//! restore started while a failover holds the record is refused. A restore that dies leaves a
//! claim that lapses by itself within [`claim_lease`]; the instance it was loading then follows
//! a seed that is gone, and the daemon repoints it.
//!
//! Where the seed listens ([`seed_address`]): on loopback for a local fleet, and at the pod's
//! own `POD_IP` on [`SEED_PORT`] inside a cluster, where the Redis pods can reach it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Progress, Snapshotter};
use crate::cluster::{Claim, Cluster, MasterRecord, Member, redis_admin};
use crate::observe::Info;
use crate::policy::WriteGuard;
use crate::snapshot::SnapshotError;
use crate::snapshot::manifest::{Codec, Manifest};
use crate::snapshot::rdb::RdbVerifier;
use crate::snapshot::seed::{self, Limits, Payload, Seed};

/// Decompressed bytes per chunk sent to the seed, and chunks in flight: the payload holds at
/// most about 8 x 256 KiB, whatever the RDB's size.
const CHUNK: usize = 256 * 1024;
const IN_FLIGHT: usize = 8;

/// What `restore --into` is told besides the snapshot.
#[derive(Debug, Clone)]
pub struct IntoOptions<'a> {
    /// Restore over instances that hold data, after taking a snapshot of them.
    pub force: bool,
    /// Who acts, named in the claim (`cli:USER@HOST/PID`).
    pub actor: &'a str,
    /// The deadline of each role command and INFO ([`crate::cluster::action_timeout`]).
    pub timeout: Duration,
    /// The write guard the policy sets on every master it promotes.
    pub guard: Option<&'a WriteGuard>,
}

/// What a restore into a deployment did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntoReport {
    pub id: String,
    /// The instance loaded and promoted.
    pub instance: String,
    pub epoch: u64,
    pub keys_loaded: u64,
    /// The key count the manifest recorded at snapshot time (the source's `INFO keyspace` as
    /// the payload began); `None`: it records none (written before keyspaces were recorded).
    pub keys_expected: Option<u64>,
    pub bytes: u64,
    pub seconds: f64,
    /// The snapshot `--force` took of what was there first.
    pub pre_restore_snapshot: Option<String>,
    /// Members that could not be repointed now, with why (a running daemon does it later).
    pub unreached: Vec<(String, String)>,
}

/// How long the restore's claim holds if it is not renewed (its holder died): long enough
/// that renewing every quarter of it survives a slow record write.
pub fn claim_lease(timeout: Duration) -> Duration {
    (timeout * 4).max(Duration::from_secs(10)) + Duration::from_secs(5)
}

impl Snapshotter {
    /// The newest complete snapshot's manifest.
    pub async fn latest(&self) -> Result<Manifest, SnapshotError> {
        self.list().await?.pop().ok_or_else(|| SnapshotError::NotFound {
            id: "latest".into(),
            url: self.destination.url.clone(),
        })
    }

    /// The manifest of `id`.
    pub async fn find(&self, id: &str) -> Result<Manifest, SnapshotError> {
        self.manifest(id).await
    }

    /// Streams `manifest`'s RDB from the destination, decompressed, as a [`Payload`] of
    /// bounded chunks. Stored bytes and sha256, the RDB's size and CRC64 are checked against
    /// the manifest as they pass; a mismatch, found at the end, is sent instead of the end,
    /// so a seed never completes a transfer that did not verify.
    pub async fn payload(&self, manifest: &Manifest) -> Result<Payload, SnapshotError> {
        // Decrypted here when encrypted: a missing or wrong identity fails now, before the
        // caller changes anything.
        let object = self.open_object(manifest).await?;
        let (sender, receiver) = mpsc::channel(IN_FLIGHT);
        let len = manifest_len(manifest);
        let manifest = manifest.clone();
        tokio::spawn(async move {
            let result = produce(object, &manifest, &sender).await;
            if let Err(error) = result {
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(Payload::new(Some(len), receiver))
    }

    /// Restores `manifest` into `cluster`: see the module documentation.
    pub async fn restore_into<C: Cluster>(
        &self,
        cluster: &C,
        manifest: &Manifest,
        options: &IntoOptions<'_>,
        progress: &dyn Progress,
    ) -> Result<IntoReport, SnapshotError> {
        let started = Instant::now();
        let failed = |action: &'static str| move |source| SnapshotError::Cluster { action, source };
        let record = cluster.fresh_record().await.map_err(failed("read the master record"))?;
        let Some(record) = record else {
            return Err(SnapshotError::Restore {
                why: "no master is recorded for the fleet yet: start it (the daemon records its \
                      first master) and retry"
                    .into(),
            });
        };
        // Another actor changing roles now: refused before anything is read or taken (the
        // record write below would refuse it too, after the work of a --force snapshot).
        if let Some(claim) = record.active_claim(chrono::Utc::now())
            && claim.by != options.actor
        {
            return Err(SnapshotError::Cluster {
                action: "claim the master record",
                source: crate::cluster::ClusterError::Busy { claim: claim.clone() },
            });
        }
        let listed = cluster.members().await.map_err(failed("list the members"))?;
        // A member that is down cannot say what it holds, and it comes back to resync from
        // the restored master: it counts as holding data, never as empty.
        let down: Vec<String> = listed
            .iter()
            .filter_map(|m| Some(format!("{} cannot be asked ({})", m.id, m.gone.as_ref()?)))
            .collect();
        let members: Vec<Member> = listed.into_iter().filter(|m| m.gone.is_none()).collect();
        let old = members.iter().find(|m| m.id == record.instance).cloned();
        // The instance to load: a replica when there is one (the recorded master is never
        // made a replica of anything but a recorded master), else the master of a fleet of one.
        let target =
            members.iter().find(|m| m.id != record.instance).or(old.as_ref()).cloned().ok_or_else(
                || SnapshotError::Restore { why: "the fleet has no running instance".into() },
            )?;
        seed_address(&target)?;
        // Reads of our own (not role commands) get at least 2 s: a restore is not in a hurry,
        // and a loaded host must not turn a slow INFO into "cannot read the version".
        let step = options.timeout.max(Duration::from_secs(2));
        // The cheap check first: the manifest's RDB version against the target's server.
        let server = self.loadable_by(&target, manifest, step).await?;
        // Then the header as stored, which a hand-edited manifest cannot hide: read from the
        // object's first bytes now (the download is dropped), before anything is changed.
        drop(self.checked_payload(manifest, &server).await?);

        let mut holding = down;
        holding.extend(self.holding_data(&members, step).await);
        let mut pre_restore_snapshot = None;
        if !holding.is_empty() {
            if !options.force {
                return Err(SnapshotError::HoldsData { instances: holding.join(", ") });
            }
            let endpoints: Vec<_> = members.iter().map(|m| m.endpoint.clone()).collect();
            let taken = self.take(&endpoints, progress).await?;
            tracing::info!(policy = %self.policy, id = %taken.id, "snapshot of the data restore replaces");
            pre_restore_snapshot = Some(taken.id);
        }

        // Again: the object may have been replaced since.
        let payload = self.checked_payload(manifest, &server).await?;

        let lease = claim_lease(options.timeout);
        let claim = |from: &Option<Member>| Claim {
            from: from.as_ref().map(|m| m.id.clone()),
            by: options.actor.to_owned(),
            until: chrono::Utc::now()
                + chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX),
        };
        let held =
            tokio::sync::Mutex::new(MasterRecord { claim: Some(claim(&old)), ..record.clone() });
        {
            let held = held.lock().await;
            cluster.record_master(held.clone()).await.map_err(failed("claim the master record"))?;
        }
        let epoch = record.epoch + 1;
        let work = self.load_and_promote(
            cluster,
            &members,
            old.as_ref(),
            &target,
            epoch,
            payload,
            &held,
            &claim,
            options,
            progress,
        );
        let renew = async {
            loop {
                tokio::time::sleep(lease / 4).await;
                let mut held = held.lock().await;
                let mut next = held.clone();
                next.claim = Some(claim(&old));
                match cluster.record_master(next.clone()).await {
                    Ok(()) => *held = next,
                    Err(error) => {
                        tracing::warn!(error = %crate::errors::chain(&error), "cannot renew the restore's claim")
                    }
                }
            }
        };
        let result =
            match futures::future::select(std::pin::pin!(work), std::pin::pin!(renew)).await {
                futures::future::Either::Left((result, _)) => result,
                futures::future::Either::Right(_) => {
                    Err(SnapshotError::Restore { why: "the claim's renewal stopped".into() })
                }
            };
        // Release: the record stays, and says who last changed roles.
        let mut released = held.into_inner();
        if let Some(claim) = &mut released.claim {
            claim.until = chrono::Utc::now();
        }
        if let Err(error) = cluster.record_master(released).await {
            tracing::warn!(error = %crate::errors::chain(&error), "cannot release the restore's claim: it lapses by itself");
        }
        let (loaded, unreached) = result?;
        Ok(IntoReport {
            id: manifest.id.clone(),
            instance: target.id.clone(),
            epoch,
            keys_loaded: loaded.keys,
            keys_expected: manifest.keys(),
            bytes: loaded.bytes,
            seconds: started.elapsed().as_secs_f64(),
            pre_restore_snapshot,
            unreached,
        })
    }

    /// Under the claim: load `target` from a seed, record it at `epoch`, demote the old
    /// master, promote `target`, repoint the others. On a failure of the load, `target` is
    /// pointed back at the old master (made master again when it is the old master: a fleet
    /// of one).
    #[allow(clippy::too_many_arguments)]
    async fn load_and_promote<C: Cluster>(
        &self,
        cluster: &C,
        members: &[Member],
        old: Option<&Member>,
        target: &Member,
        epoch: u64,
        payload: Payload,
        held: &tokio::sync::Mutex<MasterRecord>,
        claim: &(dyn Fn(&Option<Member>) -> Claim + Sync),
        options: &IntoOptions<'_>,
        progress: &dyn Progress,
    ) -> Result<(seed::Loaded, Vec<(String, String)>), SnapshotError> {
        let failed = |action: &'static str| move |source| SnapshotError::Cluster { action, source };
        let limits = Limits {
            step: options.timeout.max(Duration::from_secs(2)),
            total: self.config.limits.deadline,
            ..Limits::default()
        };
        let pointed = |seed: Member| async move {
            if old.is_some_and(|o| o.id == target.id) {
                // A fleet of one: its recorded master is the only instance to load. Safe under
                // the claim: no other actor changes roles until the record names it again.
                redis_admin::replicaof(target, Some(&seed), &self.access, options.timeout).await
            } else {
                cluster.repoint(target, &seed).await
            }
            .map_err(failed("point the target at the seed"))
        };
        let loaded = match self.load_from_seed(target, payload, limits, progress, pointed).await {
            Ok(loaded) => loaded,
            Err(error) => {
                let back = match old {
                    Some(old) if old.id != target.id => cluster.repoint(target, old).await,
                    // A fleet of one: the recorded master itself was pointed at the seed, and
                    // the record still names it, so it serves again (a failed load from disk
                    // left its data as it was; an empty one stays empty).
                    Some(_) => {
                        redis_admin::replicaof(target, None, &self.access, options.timeout).await
                    }
                    None => Ok(()),
                };
                if let Err(back) = back {
                    tracing::warn!(instance = %target.id, error = %crate::errors::chain(&back), "cannot put the target back as it was after a failed restore");
                }
                return Err(error);
            }
        };
        {
            let mut held = held.lock().await;
            let next = MasterRecord {
                claim: Some(claim(&old.cloned())),
                ..MasterRecord::new(&target.id, epoch)
            };
            cluster
                .record_master(next.clone())
                .await
                .map_err(failed("record the restored master"))?;
            *held = next;
        }
        let mut unreached = Vec::new();
        if let Some(old) = old.filter(|o| o.id != target.id)
            && let Err(error) = cluster.repoint(old, target).await
        {
            unreached.push((old.id.clone(), crate::errors::chain(&error)));
        }
        cluster.promote(target, epoch).await.map_err(failed("promote the restored master"))?;
        if let Some(guard) = options.guard {
            redis_admin::write_guard(&target.endpoint, guard, &self.access, options.timeout)
                .await
                .map_err(failed("set the write guard"))?;
        }
        let others =
            members.iter().filter(|m| m.id != target.id && old.is_none_or(|o| o.id != m.id));
        let results = futures::future::join_all(
            others.map(|member| async move { (member, cluster.repoint(member, target).await) }),
        )
        .await;
        for (member, result) in results {
            if let Err(error) = result {
                unreached.push((member.id.clone(), crate::errors::chain(&error)));
            }
        }
        Ok((loaded, unreached))
    }

    /// The server `target` runs, once the RDB version `manifest` records is one it can load
    /// (the cheap check, before anything is downloaded).
    pub(super) async fn loadable_by(
        &self,
        target: &Member,
        manifest: &Manifest,
        step: Duration,
    ) -> Result<seed::ServerVersion, SnapshotError> {
        let server = seed::server_version(&target.endpoint, &self.access, step).await?;
        let recorded = seed::RdbHeader { valkey: false, version: manifest.rdb_version };
        seed::check_version(recorded, &server)?;
        Ok(server)
    }

    /// [`Snapshotter::payload`], once the RDB header as stored is one `server` can load.
    pub(super) async fn checked_payload(
        &self,
        manifest: &Manifest,
        server: &seed::ServerVersion,
    ) -> Result<Payload, SnapshotError> {
        let mut payload = self.payload(manifest).await?;
        seed::check_version(payload.header().await?, server)?;
        Ok(payload)
    }

    /// Which of `members` hold keys, or cannot be asked (which might): each as a phrase.
    pub(super) async fn holding_data(&self, members: &[Member], step: Duration) -> Vec<String> {
        let mut holding = Vec::new();
        for member in members {
            match instance_keys(&member.endpoint, &self.access, step).await {
                Ok(0) => {}
                Ok(keys) => holding.push(format!("{} holds {keys} keys", member.id)),
                Err(why) => holding.push(format!("{} cannot be asked ({why})", member.id)),
            }
        }
        holding
    }

    /// Loads `target` from a one-shot seed at [`seed_address`] serving `payload`: `point` makes
    /// `target` a replica of the seed (given as a member), then the load is awaited and the
    /// seed's link ended. On any failure the seed is stopped and its own error, which says
    /// more than "ended before the load", is returned; where `target` points then is the
    /// caller's to fix.
    pub async fn load_from_seed<Pointed>(
        &self,
        target: &Member,
        payload: Payload,
        limits: Limits,
        progress: &dyn Progress,
        point: impl FnOnce(Member) -> Pointed,
    ) -> Result<seed::Loaded, SnapshotError>
    where
        Pointed: Future<Output = Result<(), SnapshotError>>,
    {
        let listen = seed_address(target)?;
        self.load_through_seed(target, &self.access, listen, payload, limits, progress, point).await
    }

    /// [`Snapshotter::load_from_seed`] with the seed at `listen`, reaching `target` with
    /// `access`: a restore test's scratch instance listens on loopback without TLS, wherever
    /// the daemon runs.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn load_through_seed<Pointed>(
        &self,
        target: &Member,
        access: &crate::sample::redis::Access,
        listen: SocketAddr,
        payload: Payload,
        limits: Limits,
        progress: &dyn Progress,
        point: impl FnOnce(Member) -> Pointed,
    ) -> Result<seed::Loaded, SnapshotError>
    where
        Pointed: Future<Output = Result<(), SnapshotError>>,
    {
        let len = payload.len;
        let seed = Seed::bind(listen, limits.connect).await?;
        let expected = seed::Expected {
            ips: target.endpoint.host.parse::<IpAddr>().map(|ip| vec![ip]).unwrap_or_default(),
            port: Some(target.endpoint.port),
        };
        let serving = seed.serve(payload, expected, limits);
        let seed_member = Member {
            id: format!("seed {}", serving.addr()),
            endpoint: crate::sample::redis::Endpoint {
                id: format!("seed {}", serving.addr()),
                host: serving.addr().ip().to_string(),
                port: serving.addr().port(),
            },
            ordinal: u16::MAX,
            gone: None,
        };
        let label = format!("{} into {}", seed_member.id, target.id);
        let previous =
            seed::set_diskless_load(&target.endpoint, access, limits.step, "on-empty-db").await;
        let loading = async {
            point(seed_member).await?;
            progress.start(&label, len);
            let loaded =
                seed::wait_loaded(&target.endpoint, access, &serving, limits, progress).await;
            progress.finish();
            Ok::<_, SnapshotError>(loaded?)
        };
        let loaded = loading.await;
        if let Some(previous) = previous.filter(|p| p != "on-empty-db")
            && seed::set_diskless_load(&target.endpoint, access, limits.step, &previous)
                .await
                .is_none()
        {
            tracing::warn!(instance = %target.id, previous, "cannot set repl-diskless-load back after a load from a seed");
        }
        match loaded {
            Ok(loaded) => {
                // Loaded: end the seed's link before anything else changes the target's role.
                let _ = serving.stop().await;
                Ok(loaded)
            }
            Err(error) => Err(match serving.stop().await {
                Err(seed_error)
                    if matches!(error, SnapshotError::Seed(seed::SeedError::Task { .. })) =>
                {
                    SnapshotError::Seed(seed_error)
                }
                _ => error,
            }),
        }
    }
}

/// The port a seed listens on at the pod's own address: fixed, so that a NetworkPolicy can
/// admit the Redis pods to it (`deploy/examples/network-policy`).
pub const SEED_PORT: u16 = 9188;

/// Where a seed loading `target` listens. With `POD_IP` set (the Deployment in `deploy/base`
/// sets it from the downward API, and `kubectl exec` into that pod inherits it): that address
/// on [`SEED_PORT`], which pods can reach. Without it: loopback on any free port, which only an
/// instance on this host's loopback (a local fleet) can reach, so anything else is refused
/// here, before any work, rather than after the replica failed to connect.
pub(super) fn seed_address(target: &Member) -> Result<SocketAddr, SnapshotError> {
    if let Some(ip) = std::env::var_os("POD_IP") {
        let ip = ip.to_string_lossy();
        return ip.trim().parse::<IpAddr>().map(|ip| SocketAddr::new(ip, SEED_PORT)).map_err(
            |_| SnapshotError::Restore {
                why: format!("POD_IP `{ip}` is not an IP address to listen on"),
            },
        );
    }
    let loopback = target.endpoint.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || target.endpoint.host == "localhost";
    if loopback {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    }
    Err(SnapshotError::Restore {
        why: format!(
            "{} cannot reach a seed listening here: run this inside the cluster, in the \
             daemon's pod (`kubectl exec deploy/redis-autopilot -- redis-autopilot snapshot \
             restore ...`), where POD_IP names an address the pods reach",
            target.id
        ),
    })
}

/// Keys over every database of one instance.
async fn instance_keys(
    endpoint: &crate::sample::redis::Endpoint,
    access: &crate::sample::redis::Access,
    timeout: Duration,
) -> Result<u64, String> {
    let text = seed::info(endpoint, access, timeout).await.map_err(|e| crate::errors::chain(&e))?;
    Ok(Info::parse(&text).keyspace.iter().map(|db| db.keys).sum())
}

fn manifest_len(manifest: &Manifest) -> u64 {
    manifest.raw_bytes
}

/// Reads the object (decrypted if encrypted), checks it, decodes it, and sends the RDB in
/// bounded chunks.
async fn produce(
    mut object: super::object::ObjectReader,
    manifest: &Manifest,
    sender: &mpsc::Sender<Result<Bytes, SnapshotError>>,
) -> Result<(), SnapshotError> {
    let id = &manifest.id;
    let decompress = |source| SnapshotError::Decompress { id: id.clone(), source };
    let mut decoder = match manifest.compression {
        Codec::Zstd => Some(zstd::stream::raw::Decoder::new().map_err(decompress)?),
        Codec::None => None,
    };
    let mut verifier = RdbVerifier::new();
    let mut out = Outgoing { sender, raw: 0, limit: manifest.raw_bytes };
    while let Some(chunk) = object.next().await? {
        match &mut decoder {
            None => {
                for piece in chunk.chunks(CHUNK) {
                    verifier.update(piece);
                    out.push(Bytes::copy_from_slice(piece), id).await?;
                }
            }
            Some(decoder) => {
                use zstd::stream::raw::{InBuffer, Operation as _, OutBuffer};
                let mut input = InBuffer::around(&chunk);
                loop {
                    let mut buffer = vec![0_u8; CHUNK];
                    let mut output = OutBuffer::around(&mut buffer[..]);
                    decoder.run(&mut input, &mut output).map_err(decompress)?;
                    let produced = output.pos();
                    buffer.truncate(produced);
                    if produced > 0 {
                        verifier.update(&buffer);
                        out.push(Bytes::from(buffer), id).await?;
                    }
                    if input.pos() == input.src.len() && produced < CHUNK {
                        break;
                    }
                }
            }
        }
    }
    object.finish().await?;
    super::restore::check_rdb(manifest, verifier)
}

/// The chunks on their way to the seed, never past the manifest's `rawBytes` (a zstd bomb,
/// a wrong manifest). The seed itself holds the last one back until the verdict.
struct Outgoing<'a> {
    sender: &'a mpsc::Sender<Result<Bytes, SnapshotError>>,
    raw: u64,
    limit: u64,
}

impl Outgoing<'_> {
    async fn push(&mut self, bytes: Bytes, id: &str) -> Result<(), SnapshotError> {
        self.raw += bytes.len() as u64;
        if self.raw > self.limit {
            return Err(SnapshotError::Decompress {
                id: id.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the object expands past the {} bytes its manifest records",
                        self.limit
                    ),
                ),
            });
        }
        // A closed channel: the payload was dropped (a header check, or the seed failed and
        // reports why). Stop downloading.
        self.sender
            .send(Ok(bytes))
            .await
            .map_err(|_| SnapshotError::Restore { why: "the payload's reader went away".into() })
    }
}
