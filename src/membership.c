/*
** membership.c -- the runtime follows the membership (see membership.h).
**
** Memory: one calloc'd struct holding the book, the config view and its
** nodes array; nothing else is allocated.  The driver and transport are
** borrowed from the node.
*/
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "membership.h"
#include "rafting/log.h"
#include "rafting/util.h"

#define FAREWELL_ENTRIES 64        /* entries a farewell append carries */
#define FAREWELL_BYTES (256u << 10)

/* A node a change removed: the leader keeps telling it until it holds
** that change committed or the grace runs out.  Each has its own change,
** so a second change during the grace does not cut the first's short. */
typedef struct leaver {
  uint64_t id;
  uint64_t told;  /* the farewell's prev index (what it answered) */
  uint64_t index; /* the change that removed it */
  int ticks;      /* -1: not committed; then grace left */
} leaver;

struct rf_membership {
  rf_members book;
  rf_config view;                  /* the file's, nodes = the book */
  rf_node_conf nodes[RF_MEMBERS_MAX];
  const rf_config *file;
  uint64_t id;
  char dir[4096];                  /* "" without a data directory */
  int dirty;                       /* the book changed since stored */
  int relink;                      /* ... since the peers followed it */
  rf_driver *drv;
  rf_transport *tr;
  uint64_t linked[RF_MEMBERS_MAX]; /* peers given to the transport */
  size_t n_linked;
  raft_conf conf;                  /* the configuration followed */
  uint64_t conf_index;
  leaver leaving[RAFT_MAX_NODES]; /* removed, not yet told */
  size_t n_leaving;
  int was_member;                  /* seen in a configuration (or bootstrap) */
  int removed;
  void (*on_removed)(void *, uint64_t);
  void *ud;
};

static int has(const uint64_t *ids, size_t n, uint64_t id) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] == id) return 1;
  return 0;
}

static int is_member(const raft_conf *c, uint64_t id) {
  return raft_conf_is_voter(c, id) || raft_conf_is_learner(c, id);
}

static size_t members_of(const raft_conf *c) {
  return c->n_voters + c->n_learners;
}

static uint64_t member_at(const raft_conf *c, size_t i) {
  return i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
}

static void rebuild_view(rf_membership *m) {
  m->view = *m->file;
  for (size_t i = 0; i < m->book.n; i++) {
    rf_member *e = &m->book.m[i];
    m->nodes[i] = (rf_node_conf){e->id, e->peer_host, e->peer_port,
                                 e->http_host, e->http_port};
  }
  m->view.nodes = m->nodes;
  m->view.n_nodes = m->book.n;
}

/* ------------------------------------------------------------ start */

static int dir_empty(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int empty = 1;
  if (d == NULL) return 1; /* not there yet: the storage creates it */
  while (empty && (e = readdir(d)) != NULL)
    empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
  closedir(d);
  return empty;
}

static int from_config(rf_membership *m, char *err, size_t errlen) {
  const rf_config *c = m->file;
  if (c->n_nodes > RAFT_MAX_NODES) {
    snprintf(err, errlen, "%s: more than %d nodes", c->path, RAFT_MAX_NODES);
    return RF_ECONFIG;
  }
  for (size_t i = 0; i < c->n_nodes; i++) {
    const rf_node_conf *n = &c->nodes[i];
    rf_member e = {.id = n->id, .peer_port = n->peer_port,
                   .http_port = n->http_port};
    snprintf(e.peer_host, sizeof(e.peer_host), "%s", n->peer_host);
    snprintf(e.http_host, sizeof(e.http_host), "%s", n->http_host);
    if (rf_members_set(&m->book, &e) < 0) {
      snprintf(err, errlen, "%s: nodes[%zu]: an address rafting cannot use",
               c->path, i + 1);
      return RF_ECONFIG;
    }
    m->book.boot[m->book.n_boot++] = n->id;
  }
  m->dirty = 1;
  return 0;
}

/* The config's nodes no longer matter once a membership is stored. */
static void warn_if_edited(rf_membership *m) {
  const rf_config *c = m->file;
  int differs = c->n_nodes != m->book.n_boot;
  if (m->book.n_boot == 0) return; /* it joined: they never mattered */
  for (size_t i = 0; !differs && i < c->n_nodes; i++) {
    const rf_member *e = rf_members_get(&m->book, c->nodes[i].id);
    differs = !has(m->book.boot, m->book.n_boot, c->nodes[i].id) || !e ||
              e->peer_port != c->nodes[i].peer_port ||
              e->http_port != c->nodes[i].http_port ||
              strcmp(e->peer_host, c->nodes[i].peer_host) != 0 ||
              strcmp(e->http_host, c->nodes[i].http_host) != 0;
  }
  if (differs)
    rf_log(RF_WARN, "the nodes of %s differ from the membership stored in "
           "%s/" RF_MEMBERS_FILE ": the stored one is used (a config's nodes "
           "only bootstrap an empty data directory)", c->path, m->dir);
}

static int load_or_bootstrap(rf_membership *m, int join, char *err,
                             size_t errlen) {
  int rc;
  if (m->dir[0] == '\0') return join ? 0 : from_config(m, err, errlen);
  rc = rf_members_load(&m->book, m->dir, err, errlen);
  if (rc == 0 && join) {
    snprintf(err, errlen, "--join: the data directory %s already holds a "
             "membership; a node joins once, restart it without --join",
             m->dir);
    return RF_ECONFIG;
  }
  if (rc == 0) {
    warn_if_edited(m);
    return 0;
  }
  if (rc != RF_ENONE) return RF_ESTORAGE;
  if (join && !dir_empty(m->dir)) {
    snprintf(err, errlen, "--join needs an empty data directory, and %s is "
             "not empty", m->dir);
    return RF_ECONFIG;
  }
  /* a first start, or a directory from before the members file */
  m->dirty = 1;
  return join ? 0 : from_config(m, err, errlen);
}

/* --peer / --http override what the book says about this node. */
static int own_addresses(rf_membership *m, const rf_membership_opts *o,
                         char *err, size_t errlen) {
  const rf_member *cur = rf_members_get(&m->book, m->id);
  char peer[RF_ADDR_MAX], http[RF_ADDR_MAX], why[200];
  rf_member e;
  int rc;
  if (o->peer == NULL && o->http == NULL) {
    if (cur != NULL) return 0;
    snprintf(err, errlen, "node %" PRIu64 " has no address: it is not in the "
             "nodes of %s%s; give --peer HOST:PORT and --http HOST:PORT",
             m->id, m->file->path, m->dir[0] ? " nor in its data directory" : "");
    return RF_ECONFIG;
  }
  if (cur == NULL && (o->peer == NULL || o->http == NULL)) {
    snprintf(err, errlen, "node %" PRIu64 " is not in the nodes of %s: give "
             "both --peer and --http", m->id, m->file->path);
    return RF_ECONFIG;
  }
  if (cur) rf_addr_format(peer, sizeof(peer), cur->peer_host, cur->peer_port);
  if (cur) rf_addr_format(http, sizeof(http), cur->http_host, cur->http_port);
  if (rf_member_parse(&e, m->id, o->peer ? o->peer : peer,
                      o->http ? o->http : http, why, sizeof(why)) < 0) {
    snprintf(err, errlen, "--peer/--http: %s", why);
    return RF_ECONFIG;
  }
  if ((rc = rf_members_set(&m->book, &e)) < 0) {
    snprintf(err, errlen, "--peer/--http: %s", rf_strerror(rc));
    return RF_ECONFIG;
  }
  m->dirty |= rc;
  return 0;
}

int rf_membership_open(const rf_membership_opts *o, rf_membership **out,
                       char *err, size_t errlen) {
  rf_membership *m = calloc(1, sizeof(*m));
  int rc;
  *out = NULL;
  if (m == NULL) return RF_ENOMEM;
  m->file = o->cfg;
  m->id = o->id;
  m->on_removed = o->removed;
  m->ud = o->ud;
  rf_members_init(&m->book);
  snprintf(m->dir, sizeof(m->dir), "%s", o->data_dir ? o->data_dir : "");
  if ((rc = load_or_bootstrap(m, o->join, err, errlen)) < 0 ||
      (rc = own_addresses(m, o, err, errlen)) < 0) {
    free(m);
    return rc;
  }
  m->was_member = has(m->book.boot, m->book.n_boot, m->id);
  rebuild_view(m);
  *out = m;
  return 0;
}

void rf_membership_free(rf_membership *m) { free(m); }

const rf_config *rf_membership_config(const rf_membership *m) {
  return &m->view;
}

const uint64_t *rf_membership_boot(const rf_membership *m, size_t *n) {
  *n = m->book.n_boot;
  return m->book.boot;
}

const rf_members *rf_membership_book(const rf_membership *m) {
  return &m->book;
}

int rf_membership_store(rf_membership *m, char *err, size_t errlen) {
  int rc;
  if (!m->dirty || m->dir[0] == '\0') return 0;
  if ((rc = rf_members_store(&m->book, m->dir, err, errlen)) == 0)
    m->dirty = 0;
  return rc;
}

/* ------------------------------------------------------------ the log */

/* A CONF entry's context: the addresses of its members, newest wins.
** 1 when the book changed. */
static int take_conf(rf_membership *m, const raft_entry *e) {
  const uint8_t *ctx;
  size_t len;
  raft_conf c;
  int rc;
  if (raft_conf_decode(e->data, e->len, &c) != RAFT_OK) return 0;
  if (is_member(&c, m->id)) m->was_member = 1;
  if (raft_conf_context(e->data, e->len, &ctx, &len) != RAFT_OK || len == 0)
    return 0;
  if ((rc = rf_members_merge(&m->book, ctx, len)) < 0)
    rf_log(RF_WARN, "the configuration at %" PRIu64 " carries addresses "
           "that do not decode: ignored", e->index);
  if (rc <= 0) return 0;
  m->dirty = m->relink = 1;
  return 1;
}

void rf_membership_restore(rf_membership *m, const raft_restore *rs) {
  for (size_t i = 0; i < rs->n; i++)
    if (rs->log[i].type == RAFT_ENTRY_CONF) take_conf(m, &rs->log[i]);
  rebuild_view(m);
}

void rf_membership_saved(rf_membership *m, const raft_entry *e, size_t n) {
  int changed = 0;
  for (size_t i = 0; i < n; i++)
    if (e[i].type == RAFT_ENTRY_CONF) changed |= take_conf(m, &e[i]);
  if (changed) rebuild_view(m);
}

int rf_membership_blob(const rf_membership *m, const raft_conf *conf,
                       rf_buf *out) {
  return rf_members_encode(&m->book, conf, out);
}

int rf_membership_blob_restore(rf_membership *m, const uint8_t *p,
                               size_t len) {
  int rc = rf_members_merge(&m->book, p, len);
  if (rc < 0) return rc;
  if (rc > 0) {
    m->dirty = m->relink = 1;
    rebuild_view(m);
  }
  return 0;
}

int rf_membership_blob_at(void *ud, uint64_t index, rf_buf *out) {
  rf_membership *m = ud;
  raft_conf conf;
  int rc;
  if (m->drv == NULL) return RF_EINVAL;
  if ((rc = rf_driver_conf_at(m->drv, index, &conf)) < 0) return rc;
  return rf_membership_blob(m, &conf, out);
}

void rf_membership_blob_restored(void *ud, const uint8_t *blob, size_t len) {
  if (len > 0 && rf_membership_blob_restore(ud, blob, len) < 0)
    rf_log(RF_WARN, "a snapshot's member addresses do not decode: ignored");
}

/* ------------------------------------------------------------ peers */

static void link_peer(rf_membership *m, uint64_t id) {
  const rf_member *e = rf_members_get(&m->book, id);
  int rc;
  if (id == m->id || e == NULL) return; /* kept as it is until known */
  if ((rc = rf_transport_add_peer(m->tr, id, e->peer_host, e->peer_port)) < 0) {
    rf_log(RF_WARN, "cannot dial node %" PRIu64 ": %s", id,
           rf_transport_strerror(rc));
    return;
  }
  if (has(m->linked, m->n_linked, id)) return;
  m->linked[m->n_linked++] = id;
  /* A bootstrap member may run a version from before the Hello frame
  ** (a rolling upgrade), and needs no address from us: it knows every
  ** member.  Only a node added by a change, which runs this version, can
  ** be joining. */
  if (has(m->book.boot, m->book.n_boot, id))
    (void)rf_transport_legacy_hello(m->tr, id, 1);
}

static void unlink_peer(rf_membership *m, size_t i) {
  uint64_t id = m->linked[i];
  m->linked[i] = m->linked[--m->n_linked];
  (void)rf_transport_remove_peer(m->tr, id);
  rf_log(RF_INFO, "peer %" PRIu64 " is no member any more: disconnected", id);
}

static leaver *leaving(rf_membership *m, uint64_t id) {
  for (size_t i = 0; i < m->n_leaving; i++)
    if (m->leaving[i].id == id) return &m->leaving[i];
  return NULL;
}

static void drop_leaver(rf_membership *m, size_t k) { /* keeps the order */
  memmove(&m->leaving[k], &m->leaving[k + 1],
          (m->n_leaving - k - 1) * sizeof(m->leaving[0]));
  m->n_leaving--;
}

/* The transport's peers = the members (and those leaving) minus self.  A
** node with no configuration yet (joining) keeps the peers it learnt. */
static void follow_peers(rf_membership *m) {
  for (size_t i = 0; i < members_of(&m->conf); i++)
    link_peer(m, member_at(&m->conf, i));
  for (size_t i = 0; i < m->n_leaving; i++) link_peer(m, m->leaving[i].id);
  if (members_of(&m->conf) == 0) return;
  for (size_t i = m->n_linked; i-- > 0;)
    if (!is_member(&m->conf, m->linked[i]) && !leaving(m, m->linked[i]))
      unlink_peer(m, i);
}

/* A new configuration: who it removed stays reachable until it is told.
** Earlier leavers keep their own farewell, unless added back. */
static void conf_changed(rf_membership *m, const raft_status *st) {
  raft_conf old = m->conf;
  for (size_t k = m->n_leaving; k-- > 0;)
    if (is_member(&st->conf, m->leaving[k].id)) drop_leaver(m, k);
  for (size_t i = 0; i < members_of(&old); i++) {
    uint64_t id = member_at(&old, i);
    leaver *l;
    if (is_member(&st->conf, id) || id == m->id) continue;
    if ((l = leaving(m, id)) == NULL) {
      if (m->n_leaving == RAFT_MAX_NODES) drop_leaver(m, 0); /* the oldest */
      l = &m->leaving[m->n_leaving++];
    }
    l->id = id;
    l->told = st->commit < st->conf_index ? st->commit : st->conf_index - 1;
    l->index = st->conf_index;
    l->ticks = -1;
  }
  m->conf = st->conf;
  m->conf_index = st->conf_index;
}

/* A removed follower never gets its removal from the core: the leader
** stops replicating to it as soon as the entry is appended.  The leader's
** runtime replicates the rest to it, as the core would have: an append
** from the index the follower last answered (its commit at first), a
** batch per heartbeat during the grace period, until it holds the change
** committed, applies its removal and stops.  A follower the log was
** compacted away from must be stopped by hand (docs/operations.md). */
static void farewell(rf_membership *m, const leaver *l) {
  raft_entry ents[FAREWELL_ENTRIES];
  raft_status st;
  uint64_t prev = l->told;
  size_t n = 0, bytes = 0;
  raft_msg msg;
  if (prev >= l->index) return; /* it holds the change */
  rf_driver_status(m->drv, &st);
  if (st.role != RAFT_LEADER) return; /* only the term's leader appends */
  while (n < FAREWELL_ENTRIES && bytes < FAREWELL_BYTES &&
         prev + 1 + n <= l->index &&
         rf_driver_entry(m->drv, prev + 1 + n, &ents[n]) == 0)
    bytes += ents[n++].len;
  memset(&msg, 0, sizeof(msg));
  msg.type = RAFT_MSG_APPEND;
  msg.from = m->id;
  msg.to = l->id;
  msg.term = st.term;
  msg.index = prev;
  msg.log_term = prev > 0 ? rf_driver_term_at(m->drv, prev) : 0;
  msg.commit = l->index;
  msg.entries = ents;
  msg.n_entries = n;
  if (n == 0 || (prev > 0 && msg.log_term == 0)) return; /* compacted */
  (void)rf_transport_send(m->tr, &msg);
}

int rf_membership_peer_msg(rf_membership *m, const raft_msg *msg) {
  leaver *l = leaving(m, msg->from);
  if (l == NULL || msg->type != RAFT_MSG_APPEND_RESP) return 0;
  if (!msg->reject) l->told = msg->index; /* holds (or committed) that */
  else l->told = msg->hint_index;         /* its log ends there */
  if (l->ticks >= 0 && l->told < l->index)
    farewell(m, l); /* at once: one round trip per batch */
  return 1;
}

static void leaving_tick(rf_membership *m, const raft_status *st) {
  int every = m->file->heartbeat_ticks > 0 ? m->file->heartbeat_ticks : 1;
  int dropped = 0;
  for (size_t k = m->n_leaving; k-- > 0;) {
    leaver *l = &m->leaving[k];
    if (l->ticks < 0) {
      if (st->commit < l->index) continue;
      l->ticks = 2 * m->file->election_ticks; /* committed: the grace */
    }
    if (st->role == RAFT_LEADER && l->ticks % every == 0) farewell(m, l);
    if (l->ticks-- == 0) {
      drop_leaver(m, k);
      dropped = 1;
    }
  }
  if (dropped) follow_peers(m);
}

static void check_removed(rf_membership *m, const raft_status *st) {
  rf_logrec r;
  if (m->removed || !m->was_member || members_of(&st->conf) == 0 ||
      is_member(&st->conf, m->id) || st->applied < st->conf_index)
    return;
  m->removed = 1;
  rf_log_begin(&r, RF_INFO, "removed from the cluster");
  rf_log_u64(&r, "index", st->conf_index);
  rf_log_str(&r, "effect", "this node stops (exit status 0)");
  rf_log_end(&r);
  if (m->on_removed) m->on_removed(m->ud, st->conf_index);
}

void rf_membership_attach(rf_membership *m, rf_driver *d, rf_transport *t) {
  raft_status st;
  m->drv = d;
  m->tr = t;
  rf_driver_status(d, &st);
  m->conf = st.conf;
  m->conf_index = st.conf_index;
  rf_transport_learning(t, members_of(&st.conf) == 0);
  follow_peers(m); /* none for a joining node: the leader's hello */
}

void rf_membership_sync(rf_membership *m) {
  raft_status st;
  char err[512];
  if (m->drv == NULL) return;
  rf_driver_status(m->drv, &st);
  if (m->dirty && rf_membership_store(m, err, sizeof(err)) < 0) {
    rf_log(RF_ERROR, "cannot store the membership: %s", err);
    m->dirty = 0; /* once: the log keeps the addresses anyway */
  }
  /* the core takes a configuration on append, the book its addresses
  ** when the entry is saved, which may come a batch later */
  if (st.conf_index != m->conf_index ||
      memcmp(&st.conf, &m->conf, sizeof(st.conf)) != 0) {
    conf_changed(m, &st);
    m->relink = 1;
  }
  if (m->relink) {
    m->relink = 0;
    follow_peers(m);
  }
  if (is_member(&st.conf, m->id)) m->was_member = 1;
  /* only a node with no configuration (joining) learns from hellos: a
  ** member gets every address from the log */
  rf_transport_learning(m->tr, members_of(&st.conf) == 0);
  check_removed(m, &st);
}

void rf_membership_tick(rf_membership *m) {
  raft_status st;
  if (m->drv == NULL || m->n_leaving == 0) return;
  rf_driver_status(m->drv, &st);
  leaving_tick(m, &st);
}

void rf_membership_learn(rf_membership *m, uint64_t id, const char *host,
                         int port) {
  int rc;
  if (rf_members_get(&m->book, id) != NULL || has(m->linked, m->n_linked, id))
    return; /* a known address is never replaced by a hello */
  if (members_of(&m->conf) != 0 && !is_member(&m->conf, id)) return;
  if (m->n_linked == RF_MEMBERS_MAX) return; /* hellos are peer input */
  if ((rc = rf_transport_add_peer(m->tr, id, host, port)) < 0) return;
  m->linked[m->n_linked++] = id;
  rf_log(RF_INFO, "dialing node %" PRIu64 " at %s:%d, learnt from its hello",
         id, host, port);
}

/* ------------------------------------------------------------ REST */

int rf_membership_context(const rf_membership *m, const raft_conf *next,
                          const rf_member *extra, rf_buf *out) {
  static rf_members tmp; /* the loop thread only; too big for the stack */
  tmp = m->book;
  if (extra != NULL && rf_members_set(&tmp, extra) < 0) return RF_EINVAL;
  return rf_members_encode(&tmp, next, out);
}

int rf_membership_connected(const rf_membership *m, uint64_t id) {
  return m != NULL && m->tr != NULL && rf_transport_connected(m->tr, id);
}

uint64_t rf_membership_clash(const rf_membership *m, const raft_conf *conf,
                             const rf_member *cand) {
  static rf_members tmp;
  rf_members_init(&tmp);
  for (size_t i = 0; i < members_of(conf); i++) {
    const rf_member *e = rf_members_get(&m->book, member_at(conf, i));
    if (e != NULL) (void)rf_members_set(&tmp, e);
  }
  return rf_members_clash(&tmp, cand);
}
