/*
** raft.c -- the Raft state machine (see include/rafting/raft.h).
**
** Pure: every output goes into the outbox or the log and leaves through a
** ready batch.  Section numbers refer to the Raft paper (Ongaro & Ousterhout,
** "In Search of an Understandable Consensus Algorithm") and, for pre-vote and
** check-quorum, to Ongaro's thesis.
*/
#include <string.h>

#include "rafting/assert.h"
#include "rafting/bytes.h"
#include "rafting/raft.h"
#include "conf.h"
#include "log.h"
#include "mem.h"
#include "progress.h"

typedef struct rmsgbuf {
  raft_msg *m;
  size_t n, cap;
} rmsgbuf;

typedef struct rread {
  uint64_t ctx;     /* the caller's cookie */
  uint64_t index;   /* commit index when the read arrived */
  uint64_t seq;     /* heartbeat round that confirms it */
  uint64_t acks;    /* bitmask over r->prs positions */
} rread;

typedef struct rreadbuf {
  rread *r;
  size_t n, cap;
} rreadbuf;

struct raft {
  rmem mem;             /* the log and its blobs point here: r never moves */
  uint64_t id;
  raft_config cfg;
  uint64_t rng;

  /* persistent state (§5, Figure 2) */
  uint64_t term;
  uint64_t vote;
  rlog log;

  /* volatile state */
  uint64_t commit;
  raft_role role;
  uint64_t leader;
  uint64_t led;         /* the last term this node led (a leader that steps
                           down still knows no one else leads that term) */
  int elapsed;          /* ticks since last heard from a leader / election */
  int hb_elapsed;       /* leader: ticks since last heartbeat */
  int timeout;          /* randomized election timeout in ticks */
  rprogress *prs;       /* voters, learners, then self if not a member;
                        ** room for RAFT_MAX_NODES + 1, never reallocated */
  size_t n_prs;
  int self;             /* position of this node in prs */

  /* membership (§4.1, docs/membership.md) */
  raft_conf conf;       /* in use: the latest in the log, committed or not */
  uint64_t conf_index;  /* its CONF entry, or log.snap_index */
  raft_conf snap_conf;  /* at log.snap_index (or the bootstrap voters) */
  uint64_t transferee;  /* leader: leadership transfer target (§3.10) */
  int transfer_elapsed; /* ticks since the transfer began */
  int transfer_sent;    /* TIMEOUT_NOW went out */

  /* ready bookkeeping */
  uint64_t stable;      /* last index acknowledged durable */
  uint64_t handed;      /* last index handed to a ready for persisting */
  uint64_t applied;     /* last index handed to a ready for applying */
  int bcast;            /* leader: 1 send new entries, 2 also empty appends
                        ** (commit news), at the next ready: one message per
                        ** follower however many proposals or acks came in */
  uint64_t install_index; /* a snapshot stepped in, for the next ready */
  uint64_t install_term;
  raft_hard_state saved;/* hard state last handed to a ready */
  rmsgbuf outbox;
  rreadbuf reads_ready; /* confirmed reads waiting for a ready */
  rreadbuf reads_wait;  /* leader: reads waiting for a quorum of acks */
  rreadbuf reads_early; /* leader: reads before its term's first commit */
  uint64_t read_seq;

  /* the outstanding ready (at most one) */
  int rd_out;
  uint64_t rd_last;     /* last entry index it persists */
  raft_hard_state rd_hs;
  raft_entry *rd_ents;
  size_t rd_n_ents;
  raft_entry *rd_committed;
  size_t rd_n_committed;
  rmsgbuf rd_msgs;
  raft_read_state *rd_reads;
  size_t rd_n_reads;
  raft_conf rd_snap_conf;
};

/* Upper bound of the wire bytes an entry costs besides its data. */
#define ENTRY_OVERHEAD 40

static int send_append(raft *r, rprogress *p, int send_empty);
static void become_follower(raft *r, uint64_t term, uint64_t leader);

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_next(raft *r) { return rf_splitmix64(&r->rng); }

static void reset_timeout(raft *r) {
  int e = r->cfg.election_ticks;
  r->elapsed = 0;
  r->timeout = e + (int)(rng_next(r) % (uint64_t)e);
}

/* Only voters count: for elections, commit and reads. */
static size_t quorum(const raft *r) { return r->conf.n_voters / 2 + 1; }
static int self_voter(const raft *r) { return r->prs[r->self].voter; }

/* Read acks are a bitmask over prs positions (a 65th, self as a stranger,
** never needs one: such a node does not lead a read). */
static uint64_t pos_bit(size_t pos) { return pos < 64 ? 1ULL << pos : 0; }

static rprogress *pr_of(raft *r, uint64_t id) {
  for (size_t i = 0; i < r->n_prs; i++)
    if (r->prs[i].id == id) return &r->prs[i];
  return NULL;
}

static uint64_t last_index(const raft *r) { return rlog_last(&r->log); }
static uint64_t last_term(const raft *r) {
  return rlog_term(&r->log, last_index(r));
}

static void free_entry_views(raft *r, raft_entry *e, size_t n) {
  for (size_t i = 0; i < n; i++) rlog_unref_data(e[i].data);
  rmem_free(&r->mem, e);
}

static void msgbuf_clear(raft *r, rmsgbuf *b) {
  for (size_t i = 0; i < b->n; i++)
    free_entry_views(r, (raft_entry *)b->m[i].entries, b->m[i].n_entries);
  b->n = 0;
}

static void msgbuf_free(raft *r, rmsgbuf *b) {
  msgbuf_clear(r, b);
  rmem_free(&r->mem, b->m);
  b->m = NULL;
  b->cap = 0;
}

/* Queue a message; entries (if any) must already hold blob references. */
static int send(raft *r, raft_msg *m) {
  rmsgbuf *b = &r->outbox;
  m->from = r->id;
  if (m->type != RAFT_MSG_PREVOTE && m->type != RAFT_MSG_PREVOTE_RESP)
    m->term = r->term; /* pre-vote messages carry the term of the campaign */
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    raft_msg *nm = rmem_realloc(&r->mem, b->m, cap * sizeof(*nm));
    if (nm == NULL) {
      free_entry_views(r, (raft_entry *)m->entries, m->n_entries);
      return RAFT_ENOMEM; /* dropped: Raft retransmits what matters */
    }
    b->m = nm;
    b->cap = cap;
  }
  b->m[b->n++] = *m;
  return RAFT_OK;
}

/* Room for n more reads in b. */
static int readbuf_reserve(raft *r, rreadbuf *b, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 8;
    rread *nr;
    while (cap < b->n + n) cap *= 2;
    nr = rmem_realloc(&r->mem, b->r, cap * sizeof(*nr));
    if (nr == NULL) return RAFT_ENOMEM;
    b->r = nr;
    b->cap = cap;
  }
  return RAFT_OK;
}

static int readbuf_push(raft *r, rreadbuf *b, const rread *rd) {
  if (readbuf_reserve(r, b, 1) != RAFT_OK) return RAFT_ENOMEM;
  b->r[b->n++] = *rd;
  return RAFT_OK;
}

/* ------------------------------------------------------------ the log */

/* ------------------------------------------------------------ membership */

/* The latest configuration at or before index, and the index it is from. */
static void conf_find(const raft *r, uint64_t index, raft_conf *out,
                      uint64_t *at) {
  int rc;
  for (uint64_t i = index; i > r->log.snap_index; i--) {
    raft_entry e;
    rlog_view(&r->log, i, &e);
    if (e.type != RAFT_ENTRY_CONF) continue;
    rc = raft_conf_decode(e.data, e.len, out);
    RF_ASSERT(rc == RAFT_OK); /* checked when it entered the log */
    *at = i;
    return;
  }
  *out = r->snap_conf;
  *at = r->log.snap_index;
}

/* Keep (or make) the progress of id in the new prs; n counts them. */
static void place(raft *r, rprogress *old, size_t n_old, size_t *n,
                  uint64_t id, int voter) {
  rprogress *p = &r->prs[(*n)++];
  size_t j;
  for (j = 0; j < n_old && old[j].id != id; j++) {
  }
  if (j < n_old) {
    *p = old[j];
    old[j].id = RAFT_NONE; /* taken, ring and all */
  } else {
    rpr_init(p, id, r->cfg.max_inflight, r->cfg.max_inflight_bytes,
             &r->mem); /* degrades on ENOMEM */
    rpr_reset(p, rlog_last(&r->log) + 1);
    if (id == r->id) p->match = r->stable;
  }
  p->voter = voter;
  if (id == r->id) r->self = (int)(*n - 1);
}

/* Make prs follow r->conf: progress is kept for members that stay. */
static void rebuild_prs(raft *r) {
  rprogress old[RAFT_MAX_NODES + 1];
  size_t n_old = r->n_prs, n = 0, i;
  memcpy(old, r->prs, n_old * sizeof(*old));
  for (i = 0; i < r->conf.n_voters; i++)
    place(r, old, n_old, &n, r->conf.voters[i], 1);
  for (i = 0; i < r->conf.n_learners; i++)
    place(r, old, n_old, &n, r->conf.learners[i], 0);
  if (!raft_conf_is_voter(&r->conf, r->id) &&
      !raft_conf_is_learner(&r->conf, r->id))
    place(r, old, n_old, &n, r->id, 0);
  for (i = 0; i < n_old; i++)
    if (old[i].id != RAFT_NONE) rpr_free(&old[i], &r->mem);
  r->n_prs = n;
  /* positions moved: a read waits for acks of the new members afresh */
  for (i = 0; i < r->reads_wait.n; i++)
    r->reads_wait.r[i].acks = pos_bit((size_t)r->self);
  if (r->transferee != RAFT_NONE &&
      !raft_conf_is_voter(&r->conf, r->transferee))
    r->transferee = RAFT_NONE; /* the target left: proposals resume */
}

/* Thesis §4.1: a voter that an uncommitted change removes may still be
** needed (it may hold the only up-to-date log): it stands for election, and
** counts the votes of its latest configuration, not its own. */
static int may_campaign(const raft *r) {
  raft_conf prev;
  uint64_t at;
  if (self_voter(r)) return 1;
  if (r->conf_index <= r->commit || r->conf_index == 0) return 0;
  conf_find(r, r->conf_index - 1, &prev, &at);
  return raft_conf_is_voter(&prev, r->id) && r->conf.n_voters > 0;
}

static void set_conf(raft *r, const raft_conf *c, uint64_t index) {
  r->conf = *c;
  r->conf_index = index;
  rebuild_prs(r);
}

/* ------------------------------------------------------------ the log */

/* Acks still in the outbox speak for entries the next write was to make
** durable; those from i on are gone, and an ack for them would be a lie
** that a stale leader could count (the one in the outstanding ready is
** true: that write holds them). */
static void drop_acks_from(raft *r, uint64_t i) {
  rmsgbuf *b = &r->outbox;
  size_t k = 0;
  for (size_t j = 0; j < b->n; j++) {
    raft_msg *m = &b->m[j];
    if (m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index >= i)
      continue; /* carries no entries */
    b->m[k++] = *m;
  }
  b->n = k;
}

/* Drop entries >= i, keeping the durability marks truthful. */
static void truncate_from(raft *r, uint64_t i) {
  RF_ASSERT(i > r->commit); /* committed entries are never removed (§5.3) */
  rlog_truncate(&r->log, i);
  drop_acks_from(r, i);
  if (r->stable >= i) r->stable = i - 1;
  if (r->handed >= i) r->handed = i - 1;
  if (r->rd_out && r->rd_last >= i) r->rd_last = i - 1;
  if (r->conf_index >= i) { /* §4.1: back to the latest one left */
    raft_conf c;
    uint64_t at;
    conf_find(r, rlog_last(&r->log), &c, &at);
    set_conf(r, &c, at);
  }
}

/* A CONF entry takes effect as soon as it is in the log (§4.1). */
static int append_entry(raft *r, uint64_t term, int type, const void *data,
                        size_t len) {
  raft_conf c;
  rblob *b;
  int rc;
  if (type == RAFT_ENTRY_CONF && raft_conf_decode(data, len, &c) != RAFT_OK)
    return RAFT_EINVAL;
  if ((b = rlog_blob_new(&r->mem, data, len)) == NULL) return RAFT_ENOMEM;
  rc = rlog_append(&r->log, term, type, b);
  if (rc != RAFT_OK) rlog_blob_unref(b);
  else if (type == RAFT_ENTRY_CONF) set_conf(r, &c, rlog_last(&r->log));
  return rc;
}

static void commit_to(raft *r, uint64_t index) {
  if (index > r->commit) {
    RF_ASSERT(index <= last_index(r));
    r->commit = index;
  }
}

/* §5.3/§5.4.2: the largest index a quorum stores, if it is of this term. */
static int maybe_commit(raft *r) {
  uint64_t m[RAFT_MAX_NODES + 1], k;
  size_t n = 0, i, j;
  for (i = 0; i < r->n_prs; i++) { /* voters, insertion sort, descending */
    uint64_t v = r->prs[i].match;
    if (!r->prs[i].voter) continue;
    for (j = n++; j > 0 && m[j - 1] < v; j--) m[j] = m[j - 1];
    m[j] = v;
  }
  if (n == 0) return 0;
  k = m[quorum(r) - 1];
  /* never commit an earlier term's entry by counting replicas (Figure 8) */
  if (k > r->commit && rlog_term(&r->log, k) == r->term) {
    commit_to(r, k);
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------ roles */

static void reset_peers(raft *r) {
  for (size_t i = 0; i < r->n_prs; i++) {
    rpr_reset(&r->prs[i], last_index(r) + 1);
    if ((int)i == r->self) r->prs[i].match = r->stable;
  }
}

static void drop_reads(raft *r) {
  /* a leader change makes pending reads unanswerable; the runtime sees the
  ** role change and fails them */
  r->reads_wait.n = 0;
  r->reads_early.n = 0;
}

static void become_follower(raft *r, uint64_t term, uint64_t leader) {
  RF_ASSERT(term >= r->term);
  if (term > r->term) {
    r->term = term;
    r->vote = RAFT_NONE;
  }
  r->role = RAFT_FOLLOWER;
  r->leader = leader;
  r->transferee = RAFT_NONE;
  drop_reads(r);
  reset_timeout(r);
}

static int tally(raft *r, uint64_t from, int granted, int *lost) {
  size_t yes = 0, no = 0;
  rprogress *p = pr_of(r, from);
  if (p != NULL && p->voter && p->vote < 0) p->vote = granted ? 1 : 0;
  for (size_t i = 0; i < r->n_prs; i++) {
    if (!r->prs[i].voter) continue; /* learners never vote */
    if (r->prs[i].vote == 1) yes++;
    if (r->prs[i].vote == 0) no++;
  }
  *lost = no >= quorum(r);
  return yes >= quorum(r);
}

static void become_leader(raft *r);

static void request_votes(raft *r, raft_msg_type type, uint64_t term,
                          int forced) {
  for (size_t i = 0; i < r->n_prs; i++) {
    raft_msg m;
    if ((int)i == r->self || !r->prs[i].voter) continue;
    memset(&m, 0, sizeof(m));
    m.type = type;
    m.to = r->prs[i].id;
    m.term = term;
    m.index = last_index(r);
    m.log_term = last_term(r);
    m.context = (uint64_t)forced;
    send(r, &m);
  }
}

static void start_round(raft *r, raft_role role) {
  int lost;
  r->role = role;
  r->leader = RAFT_NONE;
  reset_timeout(r);
  for (size_t i = 0; i < r->n_prs; i++) r->prs[i].vote = -1;
  if (tally(r, r->id, 1, &lost)) { /* a cluster of one wins at once */
    if (role == RAFT_PRECANDIDATE) {
      r->term++;
      r->vote = r->id;
      start_round(r, RAFT_CANDIDATE);
    } else {
      become_leader(r);
    }
  }
}

/* §5.2: increment the term, vote for self, ask everyone else. */
static void campaign(raft *r, int forced) {
  r->term++;
  r->vote = r->id;
  drop_reads(r);
  start_round(r, RAFT_CANDIDATE);
  if (r->role == RAFT_CANDIDATE)
    request_votes(r, RAFT_MSG_VOTE, r->term, forced);
}

/* Thesis §9.6: ask first whether an election could be won, term unchanged. */
static void pre_campaign(raft *r) {
  drop_reads(r);
  start_round(r, RAFT_PRECANDIDATE);
  if (r->role == RAFT_PRECANDIDATE)
    request_votes(r, RAFT_MSG_PREVOTE, r->term + 1, 0);
  else if (r->role == RAFT_CANDIDATE)
    request_votes(r, RAFT_MSG_VOTE, r->term, 0);
}

static void hup(raft *r) {
  if (r->cfg.pre_vote) pre_campaign(r);
  else campaign(r, 0);
}

static void bcast_append(raft *r, int send_empty) {
  for (size_t i = 0; i < r->n_prs; i++)
    if ((int)i != r->self) send_append(r, &r->prs[i], send_empty);
}

/* New entries to everyone, and an empty APPEND only to followers that have
** not been told the current commit index yet. */
static void bcast_commit(raft *r) {
  for (size_t i = 0; i < r->n_prs; i++) {
    rprogress *p = &r->prs[i];
    if ((int)i == r->self) continue;
    send_append(r, p, p->sent_commit < r->commit);
  }
}

static void become_leader(raft *r) {
  r->role = RAFT_LEADER;
  r->leader = r->id;
  r->led = r->term;
  r->hb_elapsed = 0;
  r->elapsed = 0;
  reset_peers(r);
  r->prs[r->self].active = 1;
  r->transferee = RAFT_NONE;
  /* §8: a no-op of the new term lets earlier entries commit promptly */
  if (append_entry(r, r->term, RAFT_ENTRY_NOOP, NULL, 0) == RAFT_OK)
    bcast_append(r, 1);
  if (quorum(r) == 1) maybe_commit(r); /* commits once durable (advance) */
}

/* ------------------------------------------------------------ leader */

/* The entries from 'from' on, at most 'limit' bytes of them but at least
** one; *bytes is what they count. */
static size_t entries_for(raft *r, uint64_t from, size_t limit,
                          raft_entry **out, size_t *nbytes) {
  uint64_t last = last_index(r), i;
  size_t bytes = 0, n = 0, cap = 0;
  raft_entry *e = NULL;
  *out = NULL;
  for (i = from; i <= last; i++) {
    raft_entry v;
    rlog_view(&r->log, i, &v);
    /* count the framing of each entry too, so that many tiny entries
    ** still fit the transport's frame limit */
    if (n > 0 && bytes + v.len + ENTRY_OVERHEAD > limit) break;
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 8;
      raft_entry *ne = rmem_realloc(&r->mem, e, nc * sizeof(*e));
      if (ne == NULL) break;
      e = ne;
      cap = nc;
    }
    rlog_ref(&r->log, i, &e[n++]);
    bytes += v.len + ENTRY_OVERHEAD;
  }
  *out = e;
  *nbytes = bytes;
  return n;
}

/* §7: what the peer needs next was compacted away: ask the runtime to
** stream it a snapshot, and wait until that transfer is over. */
static int send_snapshot(raft *r, rprogress *p) {
  raft_msg m;
  memset(&m, 0, sizeof(m));
  m.type = RAFT_MSG_SNAPSHOT;
  m.to = p->id;
  m.index = r->log.snap_index;
  m.log_term = r->log.snap_term;
  rpr_become_snapshot(p, m.index);
  if (send(r, &m) != RAFT_OK) { /* nobody streams it: probe again later */
    rpr_become_probe(p);
    p->probe_sent = 1;
  }
  return 1;
}

/* §5.3: send the peer what follows its next index (a probe sends one
** message and waits; replication pipelines up to max_inflight messages
** and max_inflight_bytes of entries, so that a follower far behind gets
** its backlog a window at a time, not as one burst the transport drops). */
static int send_append(raft *r, rprogress *p, int send_empty) {
  raft_msg m;
  raft_entry *ents;
  size_t n, bytes, limit = r->cfg.max_msg_bytes, budget;
  if (rpr_paused(p)) return 0;
  if (p->next <= r->log.snap_index) return send_snapshot(r, p);
  if ((budget = rpr_budget(p)) < limit) limit = budget;
  n = entries_for(r, p->next, limit, &ents, &bytes);
  if (n == 0 && !send_empty) {
    rmem_free(&r->mem, ents);
    return 0;
  }
  memset(&m, 0, sizeof(m));
  m.type = RAFT_MSG_APPEND;
  m.to = p->id;
  m.index = p->next - 1;
  m.log_term = rlog_term(&r->log, m.index);
  m.commit = r->commit;
  p->sent_commit = r->commit;
  m.entries = ents;
  m.n_entries = n;
  if (p->state == RAFT_PR_REPLICATE && n > 0) {
    p->next = ents[n - 1].index + 1;
    rpr_inflight_add(p, ents[n - 1].index, bytes);
  } else if (p->state == RAFT_PR_PROBE) {
    p->probe_sent = 1;
  }
  send(r, &m);
  return 1;
}

static void send_heartbeat(raft *r, rprogress *p, uint64_t ctx) {
  raft_msg m;
  memset(&m, 0, sizeof(m));
  m.type = RAFT_MSG_HEARTBEAT;
  m.to = p->id;
  /* never tell a follower to commit past what it is known to hold */
  m.commit = p->match < r->commit ? p->match : r->commit;
  m.context = ctx;
  send(r, &m);
}

static void bcast_heartbeat(raft *r) {
  uint64_t ctx = r->reads_wait.n ? r->reads_wait.r[r->reads_wait.n - 1].seq : 0;
  for (size_t i = 0; i < r->n_prs; i++)
    if ((int)i != r->self) send_heartbeat(r, &r->prs[i], ctx);
}

static int committed_in_term(const raft *r) {
  return rlog_term(&r->log, r->commit) == r->term;
}

/* A read whose quorum is reached releases it and every earlier read. */
static void reads_release(raft *r) {
  size_t i, done = 0, bit;
  for (i = 0; i < r->reads_wait.n; i++) {
    size_t acks = 0;
    for (bit = 0; bit < r->n_prs; bit++)
      if (r->prs[bit].voter && (r->reads_wait.r[i].acks & pos_bit(bit)))
        acks++;
    if (acks >= quorum(r)) done = i + 1;
  }
  /* out of memory: they stay confirmed-to-be, the next ack retries */
  if (readbuf_reserve(r, &r->reads_ready, done) != RAFT_OK) return;
  for (i = 0; i < done; i++) readbuf_push(r, &r->reads_ready, &r->reads_wait.r[i]);
  memmove(r->reads_wait.r, r->reads_wait.r + done,
          (r->reads_wait.n - done) * sizeof(rread));
  r->reads_wait.n -= done;
}

static int read_start(raft *r, uint64_t ctx) {
  rread rd;
  memset(&rd, 0, sizeof(rd));
  rd.ctx = ctx;
  rd.index = r->commit;
  if (quorum(r) == 1 && self_voter(r))
    return readbuf_push(r, &r->reads_ready, &rd);
  rd.seq = ++r->read_seq;
  rd.acks = pos_bit((size_t)r->self);
  if (readbuf_push(r, &r->reads_wait, &rd) != RAFT_OK) return RAFT_ENOMEM;
  bcast_heartbeat(r); /* the round that confirms this leader still leads */
  return RAFT_OK;
}

/* Out of memory, the reads not started stay early: a tick retries. */
static void reads_flush_early(raft *r) {
  size_t i, n = r->reads_early.n;
  for (i = 0; i < n; i++)
    if (read_start(r, r->reads_early.r[i].ctx) != RAFT_OK) break;
  memmove(r->reads_early.r, r->reads_early.r + i, (n - i) * sizeof(rread));
  r->reads_early.n = n - i;
}

static void on_commit_advanced(raft *r) {
  if (committed_in_term(r) && r->reads_early.n) reads_flush_early(r);
  r->bcast = 2; /* tell followers the new commit index */
  /* §4.2.2: a leader the committed configuration removed (or demoted)
  ** steps down; the followers hear the commit first */
  if (!self_voter(r) && r->conf_index <= r->commit) {
    bcast_commit(r);
    r->bcast = 0;
    become_follower(r, r->term, RAFT_NONE);
  }
}

static void send_timeout_now(raft *r, rprogress *p) {
  raft_msg m;
  memset(&m, 0, sizeof(m));
  m.type = RAFT_MSG_TIMEOUT_NOW;
  m.to = p->id;
  r->transfer_sent = 1;
  send(r, &m);
}

/* §3.10: the target holds the whole log: tell it to campaign now. */
static void transfer_check(raft *r, rprogress *p) {
  if (p->id == r->transferee && !r->transfer_sent &&
      p->match == last_index(r))
    send_timeout_now(r, p);
}

static void leader_append_resp(raft *r, rprogress *p, const raft_msg *m) {
  if (m->reject) {
    uint64_t next;
    if (m->index == 0) return; /* index 0 always matches: a broken peer */
    if (p->state == RAFT_PR_SNAPSHOT) return; /* answers an older append */
    if (p->state == RAFT_PR_REPLICATE) {
      if (m->index <= p->match) return; /* stale */
      rpr_become_probe(p);
    } else if (m->index != p->next - 1) {
      return; /* answers an older probe */
    }
    /* fast backtracking: skip every entry of the conflicting term at once */
    next = m->hint_index;
    if (m->hint_term > 0) next = rlog_conflict_by_term(&r->log, next, m->hint_term);
    if (next >= m->index) next = m->index - 1;
    if (next < p->match) next = p->match;
    p->next = next + 1;
    p->probe_sent = 0;
    send_append(r, p, 1);
    return;
  }
  if (m->index > last_index(r)) return; /* not something we sent */
  p->probe_sent = 0;
  if (m->index > p->match) {
    p->match = m->index;
    if (p->next < p->match + 1) p->next = p->match + 1;
    /* an old ack can come back while a snapshot is streaming: stay put
    ** until the follower holds what the log still has (etcd does too) */
    if (p->state == RAFT_PR_SNAPSHOT && p->match < r->log.snap_index) {
      rpr_inflight_free_to(p, m->index);
      if (maybe_commit(r)) on_commit_advanced(r);
      return;
    }
    if (p->state != RAFT_PR_REPLICATE) rpr_become_replicate(p);
    rpr_inflight_free_to(p, m->index);
    if (maybe_commit(r)) on_commit_advanced(r);
    if (r->role != RAFT_LEADER) return; /* removed by that commit */
  } else {
    rpr_inflight_free_to(p, m->index);
  }
  transfer_check(r, p);
  while (p->next <= last_index(r) && send_append(r, p, 0)) {
  }
}

static void leader_heartbeat_resp(raft *r, rprogress *p, const raft_msg *m) {
  size_t pos = (size_t)(p - r->prs);
  if (m->index < p->match && p->state != RAFT_PR_SNAPSHOT) {
    /* the follower lost entries it had acknowledged: only a node on memory
    ** storage that restarted can; replicate to it from what it has */
    p->match = m->index;
    rpr_become_probe(p);
  }
  if (p->state == RAFT_PR_PROBE) p->probe_sent = 0;
  /* a full window may hold a lost APPEND: free a slot so the empty APPEND
  ** below reaches the follower, whose reject restarts probing */
  if (p->state == RAFT_PR_REPLICATE && rpr_paused(p)) rpr_inflight_free_first(p);
  if (p->match < last_index(r)) send_append(r, p, 1);
  if (m->context == 0) return;
  for (size_t i = 0; i < r->reads_wait.n; i++)
    if (r->reads_wait.r[i].seq <= m->context)
      r->reads_wait.r[i].acks |= pos_bit(pos);
  reads_release(r);
}

static int step_leader(raft *r, const raft_msg *m) {
  rprogress *p = pr_of(r, m->from);
  if (p == NULL) return RAFT_OK;
  if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
      m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_TIMEOUT_NOW)
    return RAFT_EFORGED; /* another leader of our own term */
  p->active = 1;
  switch (m->type) {
  case RAFT_MSG_APPEND_RESP: leader_append_resp(r, p, m); break;
  case RAFT_MSG_HEARTBEAT_RESP: leader_heartbeat_resp(r, p, m); break;
  default: break;
  }
  return RAFT_OK;
}

/* Thesis §6.2: a leader that cannot reach a majority steps down. */
static void check_quorum(raft *r) {
  size_t live = 0;
  for (size_t i = 0; i < r->n_prs; i++) {
    if (r->prs[i].voter && ((int)i == r->self || r->prs[i].active)) live++;
    r->prs[i].active = 0;
  }
  if (live < quorum(r)) become_follower(r, r->term, RAFT_NONE);
}

/* ------------------------------------------------------------ follower */

static void reply(raft *r, const raft_msg *to, raft_msg *m) {
  m->to = to->from;
  send(r, m);
}

/* §5.3: accept entries if the log matches at prev, truncating only a
** conflicting suffix; otherwise reject with a hint for fast backtracking. */
static int handle_append(raft *r, const raft_msg *m) {
  raft_msg a;
  uint64_t lastnew = m->index + m->n_entries;
  memset(&a, 0, sizeof(a));
  a.type = RAFT_MSG_APPEND_RESP;
  if (m->index < r->commit) { /* stale: everything up to commit matches */
    a.index = r->commit;
    reply(r, m, &a);
    return RAFT_OK;
  }
  if (!rlog_has(&r->log, m->index, m->log_term)) {
    uint64_t hint = m->index < last_index(r) ? m->index : last_index(r);
    hint = rlog_conflict_by_term(&r->log, hint, m->log_term);
    a.reject = 1;
    a.index = m->index;
    a.hint_index = hint;
    a.hint_term = rlog_term(&r->log, hint);
    reply(r, m, &a);
    return RAFT_OK;
  }
  for (size_t i = 0; i < m->n_entries; i++) {
    const raft_entry *e = &m->entries[i];
    if (rlog_has(&r->log, e->index, e->term)) continue;
    if (e->index <= r->commit) return RAFT_EINVAL; /* would undo a commit */
    if (e->index <= last_index(r)) truncate_from(r, e->index);
    if (append_entry(r, e->term, e->type, e->data, e->len) != RAFT_OK) {
      lastnew = e->index - 1; /* out of memory: acknowledge what we hold */
      break;
    }
  }
  commit_to(r, m->commit < lastnew ? m->commit : lastnew);
  a.index = lastnew;
  reply(r, m, &a);
  return RAFT_OK;
}

/* §7: the runtime stored a leader's snapshot; adopt it unless the log
** already holds what it covers. */
static void handle_snapshot(raft *r, const raft_msg *m) {
  raft_msg a;
  memset(&a, 0, sizeof(a));
  a.type = RAFT_MSG_APPEND_RESP;
  if (m->index <= r->commit) {
    a.index = r->commit;
  } else if (rlog_has(&r->log, m->index, m->log_term)) {
    commit_to(r, m->index); /* the snapshot adds nothing to this log */
    a.index = r->commit;
  } else {
    raft_conf c = m->conf ? *m->conf : r->conf; /* NULL: as before */
    rlog_reset(&r->log, m->index, m->log_term);
    r->snap_conf = c;
    set_conf(r, &c, m->index);
    r->commit = r->applied = m->index;
    r->stable = r->handed = m->index;
    if (r->rd_out && r->rd_last > m->index) r->rd_last = m->index;
    r->install_index = m->index;
    r->install_term = m->log_term;
    a.index = m->index;
  }
  reply(r, m, &a);
}

static void handle_heartbeat(raft *r, const raft_msg *m) {
  raft_msg a;
  commit_to(r, m->commit < last_index(r) ? m->commit : last_index(r));
  memset(&a, 0, sizeof(a));
  a.type = RAFT_MSG_HEARTBEAT_RESP;
  a.context = m->context;
  a.index = last_index(r); /* lets a leader notice a follower that lost its log */
  reply(r, m, &a);
}

/* Figure 3, Election Safety: at most one leader per term.  A follower that
** knows this term's leader drops a leader's message from anyone else (a
** forgery or a bug, never Raft), and obeys TimeoutNow from that leader only. */
static int from_leader(const raft *r, const raft_msg *m) {
  return r->leader != RAFT_NONE && r->leader == m->from;
}

static int step_follower(raft *r, const raft_msg *m) {
  int leads = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
              m->type == RAFT_MSG_SNAPSHOT;
  if (leads && r->led == m->term) return RAFT_EFORGED; /* we led it */
  if ((leads && r->leader != RAFT_NONE && !from_leader(r, m)) ||
      (m->type == RAFT_MSG_TIMEOUT_NOW && !from_leader(r, m)))
    return r->leader != RAFT_NONE ? RAFT_EFORGED : RAFT_OK;
  switch (m->type) {
  case RAFT_MSG_APPEND:
    r->leader = m->from;
    r->elapsed = 0;
    return handle_append(r, m);
  case RAFT_MSG_HEARTBEAT:
    r->leader = m->from;
    r->elapsed = 0;
    handle_heartbeat(r, m);
    break;
  case RAFT_MSG_SNAPSHOT:
    r->leader = m->from;
    r->elapsed = 0;
    handle_snapshot(r, m);
    break;
  case RAFT_MSG_TIMEOUT_NOW:
    if (may_campaign(r)) campaign(r, 1); /* §3.10: no pre-vote */
    break;
  default: break;
  }
  return RAFT_OK;
}

static int step_candidate(raft *r, const raft_msg *m) {
  raft_msg_type want = r->role == RAFT_PRECANDIDATE ? RAFT_MSG_PREVOTE_RESP
                                                    : RAFT_MSG_VOTE_RESP;
  int lost;
  if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
      m->type == RAFT_MSG_SNAPSHOT) {
    if (r->led == m->term) return RAFT_EFORGED; /* a pre-candidate led it */
    become_follower(r, m->term, m->from); /* a leader of this term exists */
    return step_follower(r, m);
  }
  if (m->type != want) return RAFT_OK;
  if (tally(r, m->from, !m->reject, &lost)) {
    if (r->role == RAFT_PRECANDIDATE) campaign(r, 0);
    else become_leader(r);
  } else if (lost) {
    become_follower(r, r->term, RAFT_NONE);
  }
  return RAFT_OK;
}

/* ------------------------------------------------------------ votes */

/* §5.4.1: grant only to a log at least as up to date as ours. */
static int log_ok(const raft *r, const raft_msg *m) {
  return m->log_term > last_term(r) ||
         (m->log_term == last_term(r) && m->index >= last_index(r));
}

static void handle_vote(raft *r, const raft_msg *m) {
  int pre = m->type == RAFT_MSG_PREVOTE;
  raft_msg a;
  int can = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||
            (pre && m->term > r->term);
  memset(&a, 0, sizeof(a));
  a.type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP;
  if (can && log_ok(r, m)) {
    a.term = m->term; /* a pre-vote reply names the term it endorses */
    if (!pre) {
      RF_ASSERT(r->vote == RAFT_NONE || r->vote == m->from); /* one per term */
      r->vote = m->from;
      r->elapsed = 0;
    }
  } else {
    a.reject = 1;
    a.term = r->term;
  }
  reply(r, m, &a);
}

/* ------------------------------------------------------------ step */

static int valid_msg(const raft *r, const raft_msg *m) {
  if (m->type < RAFT_MSG_PREVOTE || m->type > RAFT_MSG_TYPE_MAX) return 0;
  if (m->to != r->id || m->from == r->id || m->from == RAFT_NONE) return 0;
  if (m->n_entries > 0 && m->entries == NULL) return 0;
  if (m->term >= RAFT_TERM_LIMIT || m->index >= RAFT_TERM_LIMIT ||
      m->log_term >= RAFT_TERM_LIMIT || m->commit >= RAFT_TERM_LIMIT ||
      m->hint_index >= RAFT_TERM_LIMIT || m->hint_term >= RAFT_TERM_LIMIT)
    return 0; /* malformed: no term or index arithmetic may wrap */
  if (m->n_entries > UINT32_MAX ||
      m->index + m->n_entries >= RAFT_TERM_LIMIT)
    return 0;
  for (size_t i = 0; i < m->n_entries; i++) {
    const raft_entry *e = &m->entries[i];
    if (e->index != m->index + 1 + i || e->term > m->term) return 0;
    if (e->term < (i ? m->entries[i - 1].term : m->log_term)) return 0;
    if (e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_CONF) return 0;
    if (e->len > 0 && e->data == NULL) return 0;
    if (e->type == RAFT_ENTRY_CONF) {
      raft_conf c;
      if (raft_conf_decode(e->data, e->len, &c) != RAFT_OK) return 0;
    }
  }
  if (m->conf != NULL && raft_conf_check(m->conf) != RAFT_OK) return 0;
  return 1;
}

/* A higher term: follow it, unless this is a vote request that would disturb
** a leader we heard from within the election timeout (thesis §4.2.3). */
static int step_higher_term(raft *r, const raft_msg *m) {
  int vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
  if (m->type == RAFT_MSG_TIMEOUT_NOW)
    return 0; /* a leader sends it in its term, which its target shares */
  if (vote_req && r->cfg.check_quorum && r->leader != RAFT_NONE &&
      r->elapsed < r->cfg.election_ticks && m->context != 1)
    return 0; /* in lease: ignore */
  if (m->type == RAFT_MSG_PREVOTE) return 1;
  if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject) return 1;
  if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
      m->type == RAFT_MSG_SNAPSHOT)
    become_follower(r, m->term, m->from);
  else
    become_follower(r, m->term, RAFT_NONE);
  return 1;
}

static void step_lower_term(raft *r, const raft_msg *m) {
  raft_msg a;
  memset(&a, 0, sizeof(a));
  a.reject = 1;
  a.term = r->term;
  /* Figure 2: reply false with our term, so a stale leader or candidate
  ** learns it is stale and steps down */
  switch (m->type) {
  case RAFT_MSG_APPEND:
  case RAFT_MSG_HEARTBEAT: a.type = RAFT_MSG_APPEND_RESP; break;
  case RAFT_MSG_PREVOTE: a.type = RAFT_MSG_PREVOTE_RESP; break;
  case RAFT_MSG_VOTE: a.type = RAFT_MSG_VOTE_RESP; break;
  default: return;
  }
  reply(r, m, &a);
}

/* §4.2.3: votes and pre-votes from a non-member (a removed server that
** keeps campaigning) are refused, its term ignored.  Anyone else gets an
** answer, whatever this node's own role: a learner may have been promoted,
** and a voter removed, by entries this node has not received or committed
** yet (thesis §4.1), and refusing would deadlock the election.  A vote only
** counts where the candidate's configuration makes the voter a voter. */
static int refuse_vote(raft *r, const raft_msg *m) {
  raft_msg a;
  if (m->type != RAFT_MSG_PREVOTE && m->type != RAFT_MSG_VOTE) return 0;
  if (raft_conf_is_voter(&r->conf, m->from) ||
      raft_conf_is_learner(&r->conf, m->from))
    return 0;
  memset(&a, 0, sizeof(a));
  a.type = m->type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP
                                     : RAFT_MSG_PREVOTE_RESP;
  a.reject = 1;
  a.term = r->term;
  reply(r, m, &a);
  return 1;
}

int raft_step(raft *r, const raft_msg *m) {
  if (m == NULL || !valid_msg(r, m)) return RAFT_EINVAL;
  if (refuse_vote(r, m)) return RAFT_OK;
  if (m->term > r->term) {
    if (!step_higher_term(r, m)) return RAFT_OK;
  } else if (m->term < r->term) {
    step_lower_term(r, m);
    return RAFT_OK;
  }
  if (m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE) {
    handle_vote(r, m);
    return RAFT_OK;
  }
  switch (r->role) {
  case RAFT_LEADER: return step_leader(r, m);
  case RAFT_CANDIDATE:
  case RAFT_PRECANDIDATE: return step_candidate(r, m);
  case RAFT_FOLLOWER: return step_follower(r, m);
  }
  return RAFT_OK;
}

/* ------------------------------------------------------------ inputs */

void raft_tick(raft *r) {
  if (r->role == RAFT_LEADER) {
    if (++r->elapsed >= r->cfg.election_ticks) {
      r->elapsed = 0;
      if (r->cfg.check_quorum) check_quorum(r);
      if (r->role != RAFT_LEADER) return;
    }
    if (r->transferee != RAFT_NONE &&
        ++r->transfer_elapsed >= r->cfg.election_ticks)
      r->transferee = RAFT_NONE; /* §3.10: gave up, proposals resume */
    /* out of memory earlier: the term's no-op or early reads wait */
    if (last_term(r) != r->term &&
        append_entry(r, r->term, RAFT_ENTRY_NOOP, NULL, 0) == RAFT_OK)
      r->bcast = 2;
    if (committed_in_term(r) && r->reads_early.n) reads_flush_early(r);
    if (++r->hb_elapsed >= r->cfg.heartbeat_ticks) {
      r->hb_elapsed = 0;
      bcast_heartbeat(r);
    }
    return;
  }
  if (++r->elapsed >= r->timeout) {
    if (may_campaign(r)) hup(r);
    else reset_timeout(r); /* learners and strangers never campaign */
  }
}

int raft_propose(raft *r, const void *data, size_t len, uint64_t *index,
                 uint64_t *term) {
  int rc;
  if (r->role != RAFT_LEADER) return RAFT_ENOTLEADER;
  if (r->transferee != RAFT_NONE) return RAFT_EBUSY; /* §3.10 */
  if (len > r->cfg.max_msg_bytes) return RAFT_ETOOBIG;
  rc = append_entry(r, r->term, RAFT_ENTRY_NORMAL, data, len);
  if (rc != RAFT_OK) return rc;
  if (index) *index = last_index(r);
  if (term) *term = r->term;
  if (r->bcast < 1) r->bcast = 1;
  return RAFT_OK;
}

int raft_propose_conf(raft *r, const raft_conf_change *c, uint64_t *index,
                      uint64_t *term) {
  uint8_t buf[3 + 8 * RAFT_MAX_NODES + RAFT_CONF_CONTEXT_MAX];
  raft_conf next;
  size_t len;
  int rc;
  if (c == NULL || c->context_len > RAFT_CONF_CONTEXT_MAX ||
      (c->context_len > 0 && c->context == NULL))
    return RAFT_EINVAL;
  if (r->role != RAFT_LEADER) return RAFT_ENOTLEADER;
  /* the single-server bug (raft-dev, 2015): no change before an entry of
  ** this term committed; and one change at a time */
  if (r->transferee != RAFT_NONE || !committed_in_term(r) ||
      r->conf_index > r->commit)
    return RAFT_EBUSY;
  if ((rc = rconf_apply(&r->conf, c, &next)) != RAFT_OK) return rc;
  RF_ASSERT(rconf_voter_diff(&r->conf, &next) <= 1);
  len = raft_conf_encode(&next, buf, sizeof(buf));
  RF_ASSERT(len > 0);
  if (c->context_len > 0) memcpy(buf + len, c->context, c->context_len);
  len += c->context_len; /* the runtime's bytes ride after the ids */
  if ((rc = append_entry(r, r->term, RAFT_ENTRY_CONF, buf, len)) != RAFT_OK)
    return rc;
  if (index) *index = last_index(r);
  if (term) *term = r->term;
  if (r->bcast < 1) r->bcast = 1;
  if (r->role == RAFT_LEADER && quorum(r) == 1 && self_voter(r))
    maybe_commit(r); /* alone: commits once durable (advance) */
  return RAFT_OK;
}

int raft_transfer(raft *r, uint64_t target) {
  rprogress *p;
  if (r->role != RAFT_LEADER) return RAFT_ENOTLEADER;
  if (target == r->id) return RAFT_OK;
  p = pr_of(r, target);
  if (p == NULL || !p->voter) return RAFT_EINVAL;
  if (r->transferee == target) return RAFT_OK; /* under way */
  r->transferee = target;
  r->transfer_elapsed = 0;
  r->transfer_sent = 0;
  if (p->match == last_index(r)) send_timeout_now(r, p);
  else send_append(r, p, 1); /* bring it up to date first */
  return RAFT_OK;
}

int raft_conf_at(const raft *r, uint64_t index, raft_conf *out) {
  uint64_t at;
  if (index < r->log.snap_index || index > last_index(r)) return RAFT_EINVAL;
  if (index >= r->conf_index) *out = r->conf;
  else conf_find(r, index, out, &at);
  return RAFT_OK;
}

int raft_read_index(raft *r, uint64_t ctx) {
  rread rd;
  if (r->role != RAFT_LEADER) return RAFT_ENOTLEADER;
  if (!committed_in_term(r)) { /* §8: wait for this term's first commit */
    memset(&rd, 0, sizeof(rd));
    rd.ctx = ctx;
    return readbuf_push(r, &r->reads_early, &rd);
  }
  return read_start(r, ctx);
}

int raft_campaign(raft *r) {
  if (r->role == RAFT_LEADER) return RAFT_OK;
  if (!may_campaign(r)) return RAFT_EINVAL; /* only voters stand */
  campaign(r, 0);
  return RAFT_OK;
}

/* ------------------------------------------------------------ ready */

static void hs_now(const raft *r, raft_hard_state *hs) {
  hs->term = r->term;
  hs->vote = r->vote;
  hs->commit = r->commit;
}

static int hs_equal(const raft_hard_state *a, const raft_hard_state *b) {
  return a->term == b->term && a->vote == b->vote && a->commit == b->commit;
}

int raft_has_ready(const raft *r) {
  raft_hard_state hs;
  if (r->rd_out) return 0;
  hs_now(r, &hs);
  return r->outbox.n > 0 || !hs_equal(&hs, &r->saved) || r->install_index ||
         (r->bcast && r->role == RAFT_LEADER && r->n_prs > 1) ||
         last_index(r) > r->handed || r->commit > r->applied ||
         r->reads_ready.n > 0;
}

/* Views of [lo, hi] in *out (NULL when empty); RAFT_ENOMEM. */
static int views(raft *r, uint64_t lo, uint64_t hi, raft_entry **out,
                 size_t *n) {
  raft_entry *e;
  *out = NULL;
  *n = 0;
  if (hi < lo) return RAFT_OK;
  e = rmem_alloc(&r->mem, (size_t)(hi - lo + 1) * sizeof(*e));
  if (e == NULL) return RAFT_ENOMEM;
  for (uint64_t i = lo; i <= hi; i++) rlog_ref(&r->log, i, &e[(*n)++]);
  *out = e;
  return RAFT_OK;
}

/* All or nothing: the messages speak for the entries and hard state of the
** same batch (an ack for an entry not in the write would be a lie), so out
** of memory the batch is not taken at all and raft_has_ready() stays on. */
int raft_ready_get(raft *r, raft_ready *rd) {
  uint64_t hi;
  raft_entry *ents, *committed;
  size_t n_ents, n_committed, n_reads = r->reads_ready.n;
  raft_read_state *reads = NULL;
  memset(rd, 0, sizeof(*rd));
  if (r->rd_out) return RAFT_EBUSY;
  if (r->bcast == 2 && r->role == RAFT_LEADER) bcast_commit(r);
  else if (r->bcast && r->role == RAFT_LEADER) bcast_append(r, 0);
  r->bcast = 0; /* what it sent waits in the outbox */
  hi = r->commit;
  if (hi - r->applied > r->cfg.max_apply) hi = r->applied + r->cfg.max_apply;
  if (views(r, r->handed + 1, last_index(r), &ents, &n_ents) != RAFT_OK)
    return RAFT_ENOMEM;
  /* committed entries past stable are in this batch's persist list */
  if (views(r, r->applied + 1, hi, &committed, &n_committed) != RAFT_OK ||
      (n_reads && !(reads = rmem_alloc(&r->mem, n_reads * sizeof(*reads))))) {
    free_entry_views(r, ents, n_ents);
    free_entry_views(r, committed, n_committed);
    return RAFT_ENOMEM;
  }
  hs_now(r, &r->rd_hs);
  rd->hs_changed = !hs_equal(&r->rd_hs, &r->saved);
  rd->hs = r->rd_hs;
  rd->snap_index = r->install_index;
  rd->snap_term = r->install_term;
  if (r->install_index) {
    r->rd_snap_conf = r->snap_conf;
    rd->snap_conf = &r->rd_snap_conf;
  }
  r->install_index = r->install_term = 0;
  r->rd_ents = ents;
  r->rd_n_ents = n_ents;
  r->rd_last = r->handed + n_ents;
  r->handed = r->rd_last;
  r->rd_committed = committed;
  r->rd_n_committed = n_committed;
  r->applied += n_committed;
  r->rd_msgs = r->outbox; /* move */
  memset(&r->outbox, 0, sizeof(r->outbox));
  r->rd_reads = reads;
  r->rd_n_reads = n_reads;
  for (size_t i = 0; i < n_reads; i++) {
    reads[i].index = r->reads_ready.r[i].index;
    reads[i].ctx = r->reads_ready.r[i].ctx;
  }
  r->reads_ready.n = 0;
  r->saved = r->rd_hs;
  r->rd_out = 1;
  rd->entries = r->rd_ents;
  rd->n_entries = r->rd_n_ents;
  rd->committed = r->rd_committed;
  rd->n_committed = r->rd_n_committed;
  rd->msgs = r->rd_msgs.m;
  rd->n_msgs = r->rd_msgs.n;
  rd->reads = r->rd_reads;
  rd->n_reads = r->rd_n_reads;
  return RAFT_OK;
}

void raft_advance(raft *r) {
  if (!r->rd_out) return;
  r->rd_out = 0;
  if (r->rd_last > r->stable) r->stable = r->rd_last;
  free_entry_views(r, r->rd_ents, r->rd_n_ents);
  free_entry_views(r, r->rd_committed, r->rd_n_committed);
  msgbuf_free(r, &r->rd_msgs);
  rmem_free(&r->mem, r->rd_reads);
  r->rd_ents = r->rd_committed = NULL;
  r->rd_n_ents = r->rd_n_committed = 0;
  r->rd_reads = NULL;
  r->rd_n_reads = 0;
  if (r->role == RAFT_LEADER) { /* our own write now counts (§10.2.1) */
    rprogress *self = &r->prs[r->self];
    if (r->stable > self->match) {
      self->match = r->stable;
      if (maybe_commit(r)) on_commit_advanced(r);
    }
  }
}

/* ------------------------------------------------------------ lifecycle */

void raft_config_default(raft_config *c) {
  memset(c, 0, sizeof(*c));
  c->election_ticks = 10;
  c->heartbeat_ticks = 1;
  c->max_msg_bytes = 1 << 20;
  c->max_inflight = 256;
  c->max_apply = RAFT_MAX_APPLY;
  c->pre_vote = 1;
  c->check_quorum = 1;
}

static int check_config(const raft_config *c) {
  int self = 0;
  if (c->id == RAFT_NONE || c->id >= RAFT_TERM_LIMIT ||
      c->n_voters > RAFT_MAX_NODES || (c->n_voters && c->voters == NULL))
    return 0;
  if (c->heartbeat_ticks < 1 || c->election_ticks <= c->heartbeat_ticks)
    return 0;
  if (c->max_inflight < 1 || c->max_msg_bytes < 1) return 0;
  for (size_t i = 0; i < c->n_voters; i++) {
    if (c->voters[i] == RAFT_NONE) return 0;
    if (c->voters[i] == c->id) self = 1;
    for (size_t j = 0; j < i; j++)
      if (c->voters[j] == c->voters[i]) return 0;
  }
  /* a bootstrap list names this node; none: it joins (docs/membership.md) */
  return self || c->n_voters == 0;
}

/* The configuration at the snapshot point: stored with the snapshot, or
** the bootstrap voters. */
static int base_conf(raft *r, const raft_config *c, const raft_restore *rs) {
  if (rs->conf != NULL) {
    if (raft_conf_check(rs->conf) != RAFT_OK) return RAFT_EINVAL;
    r->snap_conf = *rs->conf;
    return RAFT_OK;
  }
  memset(&r->snap_conf, 0, sizeof(r->snap_conf));
  memcpy(r->snap_conf.voters, c->voters, c->n_voters * sizeof(uint64_t));
  r->snap_conf.n_voters = c->n_voters;
  return RAFT_OK;
}

static int restore(raft *r, const raft_restore *rs) {
  uint64_t last = rs->snap_index + rs->n;
  int rc;
  rlog_reset(&r->log, rs->snap_index, rs->snap_term);
  set_conf(r, &r->snap_conf, rs->snap_index);
  for (size_t i = 0; i < rs->n; i++) {
    const raft_entry *e = &rs->log[i];
    if (e->index != rs->snap_index + 1 + i) return RAFT_EINVAL;
    if (e->term < (i ? rs->log[i - 1].term : rs->snap_term)) return RAFT_EINVAL;
    if (e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_CONF ||
        (e->len > 0 && e->data == NULL))
      return RAFT_EINVAL;
    if ((rc = append_entry(r, e->term, e->type, e->data, e->len)) != RAFT_OK)
      return rc;
  }
  if (rs->applied < rs->snap_index || rs->applied > last) return RAFT_EINVAL;
  if (last > rs->snap_index && rlog_term(&r->log, last) > rs->hs.term)
    return RAFT_EINVAL;
  r->term = rs->hs.term;
  r->vote = rs->hs.vote;
  r->commit = rs->hs.commit < last ? rs->hs.commit : last;
  if (r->commit < rs->applied) r->commit = rs->applied;
  r->applied = rs->applied;
  r->saved = rs->hs;
  r->stable = r->handed = last;
  return RAFT_OK;
}

raft *raft_new(const raft_config *c, const raft_hard_state *hs,
               const raft_entry *log, size_t n, int *err) {
  raft_restore rs;
  memset(&rs, 0, sizeof(rs));
  if (hs != NULL) rs.hs = *hs;
  rs.log = log;
  rs.n = n;
  return raft_new_restore(c, &rs, err);
}

raft *raft_new_restore(const raft_config *c, const raft_restore *rs, int *err) {
  raft *r;
  int rc = RAFT_ENOMEM;
  rmem mem;
  if (!check_config(c)) {
    if (err) *err = RAFT_EINVAL;
    return NULL;
  }
  mem.fn = c->realloc;
  mem.ud = c->realloc_ud;
  r = rmem_calloc(&mem, 1, sizeof(*r));
  if (r == NULL) goto fail;
  r->mem = mem;
  r->id = c->id;
  r->cfg = *c;
  r->cfg.voters = NULL; /* not ours to keep */
  if (r->cfg.max_apply == 0) r->cfg.max_apply = RAFT_MAX_APPLY;
  r->rng = c->seed ^ (c->id * 0x2545f4914f6cdd1dULL);
  rlog_init(&r->log, &r->mem);
  r->prs = rmem_calloc(&r->mem, RAFT_MAX_NODES + 1, sizeof(*r->prs));
  if (r->prs == NULL) goto fail;
  if ((rc = base_conf(r, c, rs)) != RAFT_OK) goto fail;
  if ((rc = restore(r, rs)) != RAFT_OK) goto fail;
  rc = RAFT_ENOMEM;
  for (size_t i = 0; i < r->n_prs; i++)
    if (r->prs[i].ring == NULL) goto fail; /* start whole or not at all */
  become_follower(r, r->term, RAFT_NONE);
  return r;
fail:
  if (err) *err = rc;
  raft_free(r);
  return NULL;
}

void raft_free(raft *r) {
  rmem mem;
  if (r == NULL) return;
  r->rd_out = 1;
  raft_advance(r);
  msgbuf_free(r, &r->outbox);
  for (size_t i = 0; r->prs && i < r->n_prs; i++) rpr_free(&r->prs[i], &r->mem);
  rmem_free(&r->mem, r->prs);
  rmem_free(&r->mem, r->reads_ready.r);
  rmem_free(&r->mem, r->reads_wait.r);
  rmem_free(&r->mem, r->reads_early.r);
  rlog_free(&r->log);
  mem = r->mem; /* r goes with it */
  rmem_free(&mem, r);
}

/* ------------------------------------------------------------ queries */

void raft_status_get(const raft *r, raft_status *st) {
  memset(st, 0, sizeof(*st));
  st->id = r->id;
  st->role = r->role;
  st->term = r->term;
  st->vote = r->vote;
  st->leader = r->leader;
  st->commit = r->commit;
  st->applied = r->applied;
  st->last_index = last_index(r);
  st->last_term = last_term(r);
  st->first_index = rlog_first(&r->log);
  st->stable_index = r->stable;
  st->n_peers = r->n_prs;
  for (size_t i = 0; i < r->n_prs; i++) {
    const rprogress *p = &r->prs[i];
    st->peers[i].id = p->id;
    st->peers[i].match = p->match;
    st->peers[i].next = p->next;
    st->peers[i].state = p->state;
    st->peers[i].active = p->active;
    st->peers[i].inflight = p->ring_count;
    st->peers[i].inflight_bytes = p->inflight_bytes;
    st->peers[i].voter = p->voter;
  }
  st->conf = r->conf;
  st->conf_index = r->conf_index;
  st->conf_pending = r->conf_index > r->commit;
  st->transferee = r->transferee;
}

raft_role raft_role_of(const raft *r) { return r->role; }
uint64_t raft_leader(const raft *r) { return r->leader; }
uint64_t raft_term(const raft *r) { return r->term; }

int raft_log_entry(const raft *r, uint64_t index, raft_entry *out) {
  if (index < rlog_first(&r->log) || index > last_index(r)) return RAFT_EINVAL;
  rlog_view(&r->log, index, out);
  return RAFT_OK;
}

const char *raft_strerror(int err) { return rf_strerror(err); }

const char *raft_role_name(raft_role role) {
  static const char *const names[] = {"follower", "precandidate", "candidate",
                                      "leader"};
  return (unsigned)role < 4 ? names[role] : "?";
}

const char *raft_msg_type_name(raft_msg_type t) {
  static const char *const names[] = {
      "?", "prevote", "prevote_resp", "vote", "vote_resp", "append",
      "append_resp", "heartbeat", "heartbeat_resp", "snapshot",
      "snapshot_resp", "timeout_now"};
  return (unsigned)t <= RAFT_MSG_TYPE_MAX ? names[t] : "?";
}

/* ------------------------------------------------------------ snapshots */

int raft_compact(raft *r, uint64_t index) {
  if (index <= r->log.snap_index || index > r->applied ||
      index > r->stable || index > last_index(r))
    return RAFT_EINVAL;
  raft_conf_at(r, index, &r->snap_conf); /* what the snapshot stores */
  rlog_compact(&r->log, index);
  return RAFT_OK;
}

void raft_report_snapshot(raft *r, uint64_t to, int ok) {
  rprogress *p = pr_of(r, to);
  if (r->role != RAFT_LEADER || p == NULL || p->state != RAFT_PR_SNAPSHOT)
    return;
  /* either way, resume probing once the follower answers a heartbeat: on
  ** success from right after the snapshot, else from what is known */
  if (ok) {
    uint64_t next = p->pending_snapshot + 1;
    rpr_become_probe(p);
    p->next = next;
  } else {
    rpr_become_probe(p);
  }
  p->probe_sent = 1;
}
