/*
** raft.h -- the pure Raft core.
**
** A deterministic Raft state machine in the style of etcd's RawNode: no I/O,
** no clock, no globals, no libuv.  Inputs are raft_tick(), raft_step(),
** raft_propose(), raft_read_index() and raft_campaign(); the output is a
** ready batch (raft_ready_get()) acknowledged by raft_advance().
**
** The ready contract: the runtime persists rd.hs and rd.entries (truncating
** its log from rd.entries[0].index first) *before* it sends rd.msgs, then
** applies rd.committed in order, then calls raft_advance().  Two allowed
** shortcuts (src/driver/driver.c takes both): a leader's APPEND, HEARTBEAT
** and SNAPSHOT messages of a term already durable may leave before the
** write (thesis 10.2.1), and committed entries this node had made durable
** before the batch (below rd.entries[0].index, no snapshot in it) may be
** applied before the write.  At most one ready is outstanding; tick/step/
** propose may be called while it is (e.g. while an fsync runs).  A leader
** only counts itself in a quorum for entries that an advanced ready has made
** durable.
**
** Memory: the core copies everything it keeps from its inputs (messages,
** proposal data, restored log).  Everything a raft_ready points to is owned
** by the core and stays valid until the matching raft_advance().
**
** Errors are negative RAFT_E* codes, which are RF_E* codes of
** rafting/error.h; 0 is success.
*/
#ifndef RAFTING_RAFT_H
#define RAFTING_RAFT_H

#include <stddef.h>
#include <stdint.h>

#include "rafting/error.h"

#define RAFT_NONE 0       /* "no node": node ids are > 0 */
#define RAFT_MAX_NODES 64 /* members (voters and learners) per cluster */
#define RAFT_MAX_APPLY 4096 /* raft_config.max_apply's default */
/* Terms and indexes at or above 2^63 are malformed: no arithmetic on them
** can wrap, and they fit a Lua integer. */
#define RAFT_TERM_LIMIT (UINT64_C(1) << 63)

/* The core's codes are rafting's (rafting/error.h), under its own names. */
enum {
  RAFT_OK = RF_OK,
  RAFT_ENOTLEADER = RF_ENOTLEADER, /* proposal or read on a non-leader */
  RAFT_ENOMEM = RF_ENOMEM,
  RAFT_EINVAL = RF_EINVAL,   /* malformed input (bad config, message to someone else) */
  RAFT_EBUSY = RF_EBUSY,     /* a ready is already outstanding */
  RAFT_ETOOBIG = RF_ETOOBIG, /* proposal larger than max_msg_bytes */
  RAFT_EFORGED = RF_EFORGED  /* a second leader in a term (dropped) */
};

typedef enum {
  RAFT_FOLLOWER = 0,
  RAFT_PRECANDIDATE,
  RAFT_CANDIDATE,
  RAFT_LEADER
} raft_role;

typedef enum {
  RAFT_ENTRY_NORMAL = 0, /* a client command: data is opaque to the core */
  RAFT_ENTRY_NOOP = 1,   /* appended by a new leader (§5.4.2, §8) */
  RAFT_ENTRY_CONF = 2    /* membership: data is a whole raft_conf (encoded) */
} raft_entry_type;

/*
** Membership (docs/membership.md): one server at a time (thesis §4.1).  A
** configuration is a set of voters and a set of learners; a node uses the
** latest one in its log, committed or not, or else the one at its snapshot
** (or, with neither, raft_config.voters).  Learners receive the log and
** snapshots but never vote and never count for commit or ReadIndex.
*/
typedef struct raft_conf {
  size_t n_voters;
  size_t n_learners;
  uint64_t voters[RAFT_MAX_NODES];
  uint64_t learners[RAFT_MAX_NODES];
} raft_conf;

typedef enum {
  RAFT_CONF_ADD_LEARNER = 1, /* a new node, not a voter: catches up first */
  RAFT_CONF_ADD_VOTER,       /* promote a learner, or add a voter directly */
  RAFT_CONF_REMOVE           /* remove a voter or a learner */
} raft_conf_op;

/* The runtime's bytes that travel with a change (the members' addresses,
** docs/membership.md), opaque to the core, as etcd's ConfChange.Context. */
#define RAFT_CONF_CONTEXT_MAX 4096

typedef struct raft_conf_change {
  int op;      /* raft_conf_op */
  uint64_t id;
  const void *context; /* copied into the entry; NULL when context_len 0 */
  size_t context_len;  /* <= RAFT_CONF_CONTEXT_MAX */
} raft_conf_change;

/* A configuration's CONF entry payload: 1 version byte, 1 byte each for the
** voter and learner counts, then the ids (8 bytes little-endian each), then
** the change's context (up to RAFT_CONF_CONTEXT_MAX bytes, to the end).
** encode returns the length (raft_conf_size(c)), or 0 if cap is too small;
** decode returns RAFT_OK or RAFT_EINVAL (short, a context over the bound,
** zero or repeated id); context returns the bytes after the configuration
** (*ctx NULL and *ctx_len 0 when there are none), or RAFT_EINVAL. */
size_t raft_conf_size(const raft_conf *c);
size_t raft_conf_encode(const raft_conf *c, uint8_t *buf, size_t cap);
int raft_conf_decode(const uint8_t *data, size_t len, raft_conf *out);
int raft_conf_context(const uint8_t *data, size_t len, const uint8_t **ctx,
                      size_t *ctx_len);
/* RAFT_OK if c is well formed (no zero or repeated id, at most
** RAFT_MAX_NODES members in all). */
int raft_conf_check(const raft_conf *c);
int raft_conf_is_voter(const raft_conf *c, uint64_t id);
int raft_conf_is_learner(const raft_conf *c, uint64_t id);

typedef struct raft_entry {
  uint64_t term;
  uint64_t index;
  int type;           /* raft_entry_type */
  size_t len;
  const uint8_t *data;
} raft_entry;

typedef struct raft_hard_state {
  uint64_t term;
  uint64_t vote;
  uint64_t commit;
} raft_hard_state;

typedef enum {
  RAFT_MSG_PREVOTE = 1,
  RAFT_MSG_PREVOTE_RESP,
  RAFT_MSG_VOTE,
  RAFT_MSG_VOTE_RESP,
  RAFT_MSG_APPEND,
  RAFT_MSG_APPEND_RESP,
  RAFT_MSG_HEARTBEAT,
  RAFT_MSG_HEARTBEAT_RESP,
  RAFT_MSG_SNAPSHOT,      /* reserved: InstallSnapshot (durability issue) */
  RAFT_MSG_SNAPSHOT_RESP, /* reserved */
  RAFT_MSG_TIMEOUT_NOW,   /* leadership transfer: start an election now */
  RAFT_MSG_TYPE_MAX = RAFT_MSG_TIMEOUT_NOW
} raft_msg_type;

/*
** One message between cores.  Field use by type:
**   PREVOTE/VOTE:     index/log_term = candidate's last log index/term.
**                     A PREVOTE carries the term the sender *would* use.
**   *_RESP (votes):   reject = 1 when the vote is denied.
**   APPEND:           index/log_term = prev entry; entries; commit.
**   APPEND_RESP:      success: index = last index now matching the leader.
**                     reject: index = the prev index that failed, and
**                     hint_index/hint_term = the follower's conflict hint
**                     (its last index <= index, and the term there) so the
**                     leader can skip a whole term per round trip.
**   HEARTBEAT:        commit (min of leader commit and follower match);
**                     context = read-index round (0 if none).
**   HEARTBEAT_RESP:   context echoed; index = the follower's last index.
**   SNAPSHOT:         index/log_term = the snapshot's last index and term.
**                     From a leader's core it asks the runtime to stream a
**                     snapshot covering at least index to `to`; the
**                     receiving runtime steps it into its core only once
**                     the whole snapshot is stored.  The answer is an
**                     APPEND_RESP.
*/
typedef struct raft_msg {
  raft_msg_type type;
  uint64_t from;
  uint64_t to;
  uint64_t term;
  uint64_t index;
  uint64_t log_term;
  uint64_t commit;
  int reject;
  uint64_t hint_index;
  uint64_t hint_term;
  uint64_t context;
  size_t n_entries;
  const raft_entry *entries;
  /* SNAPSHOT(_RESP) between runtimes, streaming the snapshot's bytes (the
  ** core neither reads nor sets these): a chunk of size total bytes at
  ** offset, done on the last; a SNAPSHOT_RESP's offset is the next byte
  ** expected. */
  uint64_t offset;
  uint64_t size;
  const uint8_t *data;
  size_t data_len;
  int done;
  /* SNAPSHOT stepped into a core: the configuration at the snapshot's index
  ** (stored with the snapshot).  NULL: unknown, the core keeps the
  ** configuration it has (a runtime that never changed membership). */
  const raft_conf *conf;
} raft_msg;

typedef struct raft_config {
  uint64_t id;              /* this node, > 0 */
  const uint64_t *voters;   /* bootstrap voters (used until a snapshot or a
                            ** CONF entry says otherwise); empty, or without
                            ** id: a node that joins and waits for a leader */
  size_t n_voters;
  int election_ticks;       /* base election timeout; actual is [e, 2e) */
  int heartbeat_ticks;      /* < election_ticks */
  uint64_t seed;            /* election jitter; same seed, same run */
  size_t max_msg_bytes;     /* bound on entry bytes per APPEND (>= 1 entry) */
  int max_inflight;         /* APPENDs in flight per follower when replicating */
  size_t max_inflight_bytes; /* ... and their entry bytes (0: no bound): an
                            ** APPEND goes while under it and takes what is
                            ** left, but at least one entry, so in flight
                            ** stays below this plus one entry */
  size_t max_apply;         /* committed entries per ready (0:
                            ** RAFT_MAX_APPLY), so a long replay does not
                            ** stall the runtime; the driver also ends a
                            ** process() call after applying this many */
  int pre_vote;             /* §9.6 pre-vote, on by default */
  int check_quorum;         /* leader steps down without a live majority */
  /* Every allocation of the core (and of the driver around it) goes through
  ** realloc(realloc_ud, ptr, size), as lua_Alloc: size 0 frees and returns
  ** NULL; NULL means out of memory, which the core survives (it drops a
  ** message, refuses a proposal, retries a ready).  NULL: the C library. */
  void *(*realloc)(void *ud, void *ptr, size_t size);
  void *realloc_ud;
} raft_config;

/* Fill a config with the defaults (10/1 ticks, 1 MiB, 256, no byte bound in
** flight, both switches on, the C library's allocator). */
void raft_config_default(raft_config *c);

typedef struct raft_read_state {
  uint64_t index; /* apply up to here, then the read is linearizable */
  uint64_t ctx;   /* the caller's context from raft_read_index() */
} raft_read_state;

typedef struct raft_ready {
  int hs_changed;               /* persist hs when set */
  raft_hard_state hs;
  /* When snap_index > 0 the log was replaced by the snapshot stepped in at
  ** (snap_index, snap_term): persist that first (the storage drops its log),
  ** and install the snapshot into the state machine before applying
  ** committed, which then continues after snap_index. */
  uint64_t snap_index;
  uint64_t snap_term;
  const raft_conf *snap_conf;   /* with snap_index: its configuration */
  const raft_entry *entries;    /* to persist, contiguous, ascending */
  size_t n_entries;
  const raft_msg *msgs;         /* to send after persisting */
  size_t n_msgs;
  const raft_entry *committed;  /* to apply, in order */
  size_t n_committed;
  const raft_read_state *reads; /* read-index rounds that became safe */
  size_t n_reads;
} raft_ready;

typedef enum {
  RAFT_PR_PROBE = 0,
  RAFT_PR_REPLICATE,
  RAFT_PR_SNAPSHOT
} raft_progress_state;

typedef struct raft_peer_status {
  uint64_t id;
  uint64_t match;
  uint64_t next;
  int state;        /* raft_progress_state */
  int active;       /* heard from within the last election timeout */
  int inflight;
  size_t inflight_bytes; /* entry bytes of those APPENDs */
  int voter;        /* 0: a learner (or this node when not a member) */
} raft_peer_status;

typedef struct raft_status {
  uint64_t id;
  raft_role role;
  uint64_t term;
  uint64_t vote;
  uint64_t leader;        /* RAFT_NONE when unknown */
  uint64_t commit;
  uint64_t applied;       /* last index handed out in a ready's committed */
  uint64_t last_index;
  uint64_t last_term;
  uint64_t first_index;
  uint64_t stable_index;  /* last index acknowledged durable */
  size_t n_peers;         /* valid entries in peers, self included */
  raft_peer_status peers[RAFT_MAX_NODES + 1];
  raft_conf conf;         /* the configuration in use (latest in the log) */
  uint64_t conf_index;    /* its entry's index (or the snapshot's) */
  int conf_pending;       /* conf_index > commit: a change is in flight */
  uint64_t transferee;    /* leader: leadership transfer target, or NONE */
} raft_status;

typedef struct raft raft;

/*
** Create a core, restoring what was persisted: hs (may be NULL for a fresh
** node) and the log entries log[0..n) with consecutive indexes starting at 1.
** The restored commit is clamped to the log.  Returns NULL on bad config or
** memory, with the reason in *err when err is not NULL.
*/
raft *raft_new(const raft_config *c, const raft_hard_state *hs,
               const raft_entry *log, size_t n, int *err);

/* What a restarted node restores from: after compaction the log starts at
** snap_index + 1, and the state machine was rebuilt from a snapshot up to
** applied (snap_index <= applied <= the last log index, or == snap_index
** when the log is empty). */
typedef struct raft_restore {
  raft_hard_state hs;
  uint64_t snap_index; /* 0: the log starts at 1 */
  uint64_t snap_term;
  uint64_t applied;
  const raft_entry *log; /* indexes snap_index + 1, snap_index + 2, ... */
  size_t n;
  const raft_conf *conf; /* the configuration at snap_index, stored with the
                         ** snapshot; NULL: raft_config.voters */
} raft_restore;

raft *raft_new_restore(const raft_config *c, const raft_restore *rs, int *err);

/* The state machine is safely snapshotted up to index (<= applied and
** durable): drop the log up to there.  RAFT_EINVAL if out of range. */
int raft_compact(raft *r, uint64_t index);

/* The runtime finished (ok = 1) or gave up (ok = 0) streaming the snapshot
** that a SNAPSHOT message asked it to send to node `to`. */
void raft_report_snapshot(raft *r, uint64_t to, int ok);
void raft_free(raft *r);

void raft_tick(raft *r);
int raft_step(raft *r, const raft_msg *m);

/* Append a command as leader.  On success *index and *term tell where it will
** commit (if it does).  RAFT_ENOTLEADER otherwise; raft_leader() hints. */
int raft_propose(raft *r, const void *data, size_t len, uint64_t *index,
                 uint64_t *term);

/* Propose a membership change as leader (one server at a time, §4.1):
** RAFT_ENOTLEADER; RAFT_EBUSY while no entry of this term has committed
** yet, while an earlier change is not committed, or during a leadership
** transfer; RAFT_EINVAL for a change that does not apply (adding a member,
** removing a stranger, removing the last voter, too many members, a
** context over RAFT_CONF_CONTEXT_MAX).  On success *index and *term say
** where the change will commit, if it does. */
int raft_propose_conf(raft *r, const raft_conf_change *c, uint64_t *index,
                      uint64_t *term);

/* Leadership transfer (thesis §3.10): stop taking proposals (RAFT_EBUSY),
** bring target up to date, send it TIMEOUT_NOW; give up after an election
** timeout.  RAFT_ENOTLEADER; RAFT_EINVAL if target is not a voter; RAFT_OK
** at once if target is this node. */
int raft_transfer(raft *r, uint64_t target);

/* The configuration in effect at index (snapshot index <= index <= last
** index): what a snapshot taken at index must store.  RAFT_EINVAL if the
** log no longer or not yet holds index. */
int raft_conf_at(const raft *r, uint64_t index, raft_conf *out);

/* Start a linearizable read.  The matching raft_read_state appears in a later
** ready once a quorum confirmed leadership; ctx is the caller's cookie. */
int raft_read_index(raft *r, uint64_t ctx);

/* Start an election now (skipping pre-vote), e.g. on TIMEOUT_NOW or in tests. */
int raft_campaign(raft *r);

int raft_has_ready(const raft *r);
int raft_ready_get(raft *r, raft_ready *rd);
void raft_advance(raft *r);

void raft_status_get(const raft *r, raft_status *st);
raft_role raft_role_of(const raft *r);
uint64_t raft_leader(const raft *r);
uint64_t raft_term(const raft *r);

/* A view of entry `index` of the in-memory log (for checks and tests);
** RAFT_EINVAL if out of range.  out->data is valid until the log changes. */
int raft_log_entry(const raft *r, uint64_t index, raft_entry *out);

const char *raft_strerror(int err);
const char *raft_role_name(raft_role role);
const char *raft_msg_type_name(raft_msg_type t);

#endif
