/*
** codec.c -- raft_msg <-> peer wire frames (see rafting/codec.h).
**
** Encoding builds the protobuf-c structs on the stack (entries in one
** temporary block) pointing at the caller's data, packs once into the
** frame buffer and frees nothing else.  Decoding keeps the unpacked
** envelope alive so entry data is referenced, not copied.
*/
#include <stdlib.h>
#include <string.h>

#include "raft.pb-c.h"
#include "rafting/bytes.h"
#include "rafting/codec.h"

typedef Rafting__Envelope Env;

uint32_t rf_frame_len(const uint8_t *p) { return rf_get_be32(p); }

void rf_frame_put_len(uint8_t *p, uint32_t n) { rf_put_be32(p, n); }

/* An append's entries must extend prev contiguously, with terms that never
** go down and never pass the message term: the core relies on it. */
static int check_entries(const raft_msg *m) {
  uint64_t term = m->log_term;
  for (size_t i = 0; i < m->n_entries; i++) {
    const raft_entry *e = &m->entries[i];
    if (e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_CONF)
      return RF_CODEC_ERANGE;
    if (e->index == 0 || e->index != m->index + 1 + i) return RF_CODEC_ERANGE;
    if (e->term < term || e->term > m->term) return RF_CODEC_ERANGE;
    if (e->len > 0 && e->data == NULL) return RF_CODEC_EINVAL;
    term = e->term;
  }
  return 0;
}

/* A term, index or offset at or above 2^63 is malformed (RAFT_TERM_LIMIT):
** refused here so it holds for every message, whatever the type. */
static int check_ranges(const raft_msg *m) {
  const uint64_t v[] = {m->term, m->index, m->log_term, m->commit,
                        m->hint_index, m->hint_term, m->offset, m->size};
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
    if (v[i] >= RAFT_TERM_LIMIT) return RF_CODEC_ERANGE;
  if (m->index + m->n_entries >= RAFT_TERM_LIMIT) return RF_CODEC_ERANGE;
  return 0;
}

/* What both ends refuse: no node 0, no self-addressed frames, no unknown
** type, entries only on appends, no term or index that could wrap. */
static int check_msg(const raft_msg *m) {
  if (m->type < RAFT_MSG_PREVOTE || m->type > RAFT_MSG_TYPE_MAX)
    return RF_CODEC_ETYPE;
  if (check_ranges(m) != 0) return RF_CODEC_ERANGE;
  if (m->from == RAFT_NONE || m->to == RAFT_NONE || m->from == m->to)
    return RF_CODEC_ERANGE;
  if (m->n_entries > 0 && m->type != RAFT_MSG_APPEND) return RF_CODEC_ERANGE;
  if (m->n_entries > 0 && m->entries == NULL) return RF_CODEC_EINVAL;
  return check_entries(m);
}

/* ---- encode --------------------------------------------------------- */

/* Storage for whichever body the envelope points at. */
typedef union body {
  Rafting__VoteRequest vreq;
  Rafting__VoteResponse vresp;
  Rafting__AppendEntries app;
  Rafting__AppendEntriesResponse aresp;
  Rafting__Heartbeat hb;
  Rafting__HeartbeatResponse hbresp;
  Rafting__InstallSnapshot snap;
  Rafting__InstallSnapshotResponse sresp;
  Rafting__TimeoutNow tn;
} body;

static void put_vote(Env *env, body *b, const raft_msg *m, int pre) {
  rafting__vote_request__init(&b->vreq);
  b->vreq.last_log_index = m->index;
  b->vreq.last_log_term = m->log_term;
  b->vreq.transfer = m->context == 1;
  env->body_case = pre ? RAFTING__ENVELOPE__BODY_PRE_VOTE
                       : RAFTING__ENVELOPE__BODY_VOTE;
  env->vote = &b->vreq; /* same union slot as pre_vote */
}

static void put_vote_resp(Env *env, body *b, const raft_msg *m, int pre) {
  rafting__vote_response__init(&b->vresp);
  b->vresp.reject = m->reject != 0;
  env->body_case = pre ? RAFTING__ENVELOPE__BODY_PRE_VOTE_RESP
                       : RAFTING__ENVELOPE__BODY_VOTE_RESP;
  env->vote_resp = &b->vresp;
}

/* ents is a block of n structs followed by n pointers to them. */
static void put_append(Env *env, body *b, const raft_msg *m,
                       Rafting__Entry *ents) {
  Rafting__Entry **ptrs = /* NULL + 0 is undefined too */
      ents ? (Rafting__Entry **)(ents + m->n_entries) : NULL;
  rafting__append_entries__init(&b->app);
  b->app.prev_log_index = m->index;
  b->app.prev_log_term = m->log_term;
  b->app.commit = m->commit;
  for (size_t i = 0; i < m->n_entries; i++) {
    const raft_entry *e = &m->entries[i];
    rafting__entry__init(&ents[i]);
    ents[i].term = e->term;
    ents[i].index = e->index;
    ents[i].type = (Rafting__EntryType)e->type;
    ents[i].data.len = e->len;
    ents[i].data.data = (uint8_t *)e->data; /* only read by pack */
    ptrs[i] = &ents[i];
  }
  b->app.n_entries = m->n_entries;
  b->app.entries = m->n_entries ? ptrs : NULL;
  env->body_case = RAFTING__ENVELOPE__BODY_APPEND;
  env->append = &b->app;
}

static void put_body(Env *env, body *b, const raft_msg *m,
                     Rafting__Entry *ents) {
  switch (m->type) {
  case RAFT_MSG_PREVOTE: put_vote(env, b, m, 1); break;
  case RAFT_MSG_VOTE: put_vote(env, b, m, 0); break;
  case RAFT_MSG_PREVOTE_RESP: put_vote_resp(env, b, m, 1); break;
  case RAFT_MSG_VOTE_RESP: put_vote_resp(env, b, m, 0); break;
  case RAFT_MSG_APPEND: put_append(env, b, m, ents); break;
  case RAFT_MSG_APPEND_RESP:
    rafting__append_entries_response__init(&b->aresp);
    b->aresp.reject = m->reject != 0;
    b->aresp.index = m->index;
    b->aresp.hint_index = m->hint_index;
    b->aresp.hint_term = m->hint_term;
    env->body_case = RAFTING__ENVELOPE__BODY_APPEND_RESP;
    env->append_resp = &b->aresp;
    break;
  case RAFT_MSG_HEARTBEAT:
    rafting__heartbeat__init(&b->hb);
    b->hb.commit = m->commit;
    b->hb.context = m->context;
    env->body_case = RAFTING__ENVELOPE__BODY_HEARTBEAT;
    env->heartbeat = &b->hb;
    break;
  case RAFT_MSG_HEARTBEAT_RESP:
    rafting__heartbeat_response__init(&b->hbresp);
    b->hbresp.context = m->context;
    b->hbresp.last_index = m->index;
    env->body_case = RAFTING__ENVELOPE__BODY_HEARTBEAT_RESP;
    env->heartbeat_resp = &b->hbresp;
    break;
  case RAFT_MSG_SNAPSHOT:
    rafting__install_snapshot__init(&b->snap);
    b->snap.snapshot_index = m->index;
    b->snap.snapshot_term = m->log_term;
    b->snap.offset = m->offset;
    b->snap.size = m->size;
    b->snap.done = m->done != 0;
    b->snap.data.data = (uint8_t *)m->data;
    b->snap.data.len = m->data_len;
    env->body_case = RAFTING__ENVELOPE__BODY_SNAPSHOT;
    env->snapshot = &b->snap;
    break;
  case RAFT_MSG_SNAPSHOT_RESP:
    rafting__install_snapshot_response__init(&b->sresp);
    b->sresp.reject = m->reject != 0;
    b->sresp.index = m->index;
    b->sresp.offset = m->offset;
    env->body_case = RAFTING__ENVELOPE__BODY_SNAPSHOT_RESP;
    env->snapshot_resp = &b->sresp;
    break;
  case RAFT_MSG_TIMEOUT_NOW:
    rafting__timeout_now__init(&b->tn);
    env->body_case = RAFTING__ENVELOPE__BODY_TIMEOUT_NOW;
    env->timeout_now = &b->tn;
    break;
  }
}

static int pack(const Env *env, uint8_t **out, size_t *len) {
  size_t n = rafting__envelope__get_packed_size(env);
  uint8_t *buf = n <= UINT32_MAX ? malloc(RF_FRAME_HEADER + n) : NULL;
  if (buf == NULL) return n <= UINT32_MAX ? RF_CODEC_ENOMEM : RF_CODEC_ERANGE;
  rf_frame_put_len(buf, (uint32_t)n);
  rafting__envelope__pack(env, buf + RF_FRAME_HEADER);
  *out = buf;
  *len = RF_FRAME_HEADER + n;
  return 0;
}

int rf_codec_encode_hello(const char *cluster, uint64_t from, uint64_t to,
                          const char *addr, uint8_t **out, size_t *len) {
  Env env = RAFTING__ENVELOPE__INIT;
  Rafting__Hello h = RAFTING__HELLO__INIT;
  if (cluster == NULL || *cluster == '\0' || addr == NULL || out == NULL ||
      len == NULL)
    return RF_CODEC_EINVAL;
  if (from == RAFT_NONE || to == RAFT_NONE || from >= RAFT_TERM_LIMIT ||
      to >= RAFT_TERM_LIMIT)
    return RF_CODEC_ERANGE;
  env.cluster = (char *)cluster; /* only read by pack */
  env.from = from;
  env.to = to;
  h.peer = (char *)addr;
  env.body_case = RAFTING__ENVELOPE__BODY_HELLO;
  env.hello = &h;
  return pack(&env, out, len);
}

int rf_codec_encode(const char *cluster, const raft_msg *m, uint8_t **out,
                    size_t *len) {
  Env env = RAFTING__ENVELOPE__INIT;
  body b;
  Rafting__Entry *ents = NULL;
  int rc;

  if (cluster == NULL || *cluster == '\0' || m == NULL || out == NULL ||
      len == NULL)
    return RF_CODEC_EINVAL;
  if ((rc = check_msg(m)) != 0) return rc;
  if (m->n_entries > 0) {
    ents = malloc(m->n_entries * (sizeof(*ents) + sizeof(ents)));
    if (ents == NULL) return RF_CODEC_ENOMEM;
  }
  env.cluster = (char *)cluster; /* only read by pack */
  env.from = m->from;
  env.to = m->to;
  env.term = m->term;
  put_body(&env, &b, m, ents);
  rc = pack(&env, out, len);
  free(ents);
  return rc;
}

/* ---- decode --------------------------------------------------------- */

static int get_append(rf_decoded *d, const Rafting__AppendEntries *a) {
  raft_msg *m = &d->msg;
  m->index = a->prev_log_index;
  m->log_term = a->prev_log_term;
  m->commit = a->commit;
  if (a->n_entries == 0) return 0;
  d->ents_ = malloc(a->n_entries * sizeof(*d->ents_));
  if (d->ents_ == NULL) return RF_CODEC_ENOMEM;
  for (size_t i = 0; i < a->n_entries; i++) {
    const Rafting__Entry *pe = a->entries[i];
    raft_entry *e = &d->ents_[i];
    e->term = pe->term;
    e->index = pe->index;
    e->type = (int)pe->type; /* range-checked by check_msg */
    e->len = pe->data.len;
    e->data = pe->data.data;
  }
  m->n_entries = a->n_entries;
  m->entries = d->ents_;
  return 0;
}

static int get_body(rf_decoded *d, const Env *env) {
  raft_msg *m = &d->msg;
  switch (env->body_case) {
  case RAFTING__ENVELOPE__BODY_PRE_VOTE:
  case RAFTING__ENVELOPE__BODY_VOTE:
    m->type = env->body_case == RAFTING__ENVELOPE__BODY_VOTE
                  ? RAFT_MSG_VOTE : RAFT_MSG_PREVOTE;
    m->index = env->vote->last_log_index;
    m->log_term = env->vote->last_log_term;
    m->context = env->vote->transfer ? 1 : 0;
    return 0;
  case RAFTING__ENVELOPE__BODY_PRE_VOTE_RESP:
  case RAFTING__ENVELOPE__BODY_VOTE_RESP:
    m->type = env->body_case == RAFTING__ENVELOPE__BODY_VOTE_RESP
                  ? RAFT_MSG_VOTE_RESP : RAFT_MSG_PREVOTE_RESP;
    m->reject = env->vote_resp->reject != 0;
    return 0;
  case RAFTING__ENVELOPE__BODY_APPEND:
    m->type = RAFT_MSG_APPEND;
    return get_append(d, env->append);
  case RAFTING__ENVELOPE__BODY_APPEND_RESP:
    m->type = RAFT_MSG_APPEND_RESP;
    m->reject = env->append_resp->reject != 0;
    m->index = env->append_resp->index;
    m->hint_index = env->append_resp->hint_index;
    m->hint_term = env->append_resp->hint_term;
    return 0;
  case RAFTING__ENVELOPE__BODY_HEARTBEAT:
    m->type = RAFT_MSG_HEARTBEAT;
    m->commit = env->heartbeat->commit;
    m->context = env->heartbeat->context;
    return 0;
  case RAFTING__ENVELOPE__BODY_HEARTBEAT_RESP:
    m->type = RAFT_MSG_HEARTBEAT_RESP;
    m->context = env->heartbeat_resp->context;
    m->index = env->heartbeat_resp->last_index;
    return 0;
  case RAFTING__ENVELOPE__BODY_SNAPSHOT:
    m->type = RAFT_MSG_SNAPSHOT;
    m->index = env->snapshot->snapshot_index;
    m->log_term = env->snapshot->snapshot_term;
    m->offset = env->snapshot->offset;
    m->size = env->snapshot->size;
    m->done = env->snapshot->done;
    m->data = env->snapshot->data.data;
    m->data_len = env->snapshot->data.len;
    return 0;
  case RAFTING__ENVELOPE__BODY_SNAPSHOT_RESP:
    m->type = RAFT_MSG_SNAPSHOT_RESP;
    m->reject = env->snapshot_resp->reject != 0;
    m->index = env->snapshot_resp->index;
    m->offset = env->snapshot_resp->offset;
    return 0;
  case RAFTING__ENVELOPE__BODY_TIMEOUT_NOW:
    m->type = RAFT_MSG_TIMEOUT_NOW;
    return 0;
  case RAFTING__ENVELOPE__BODY_HELLO: /* ids and an address, nothing else */
    d->hello = env->hello->peer != NULL ? env->hello->peer : "";
    m->term = 0;
    return 0;
  default:
    return RF_CODEC_ETYPE; /* not set, or a case this build does not know */
  }
}

int rf_codec_decode(const uint8_t *buf, size_t len, const char *cluster,
                    rf_decoded *d) {
  Env *env;
  int rc;

  if (d == NULL) return RF_CODEC_EINVAL;
  memset(d, 0, sizeof(*d));
  if (cluster == NULL || (buf == NULL && len > 0)) return RF_CODEC_EINVAL;
  env = rafting__envelope__unpack(NULL, len, buf);
  if (env == NULL) return RF_CODEC_EUNPACK;
  d->env_ = env;
  if (strcmp(env->cluster, cluster) != 0) {
    rc = RF_CODEC_ECLUSTER;
  } else {
    d->msg.from = env->from;
    d->msg.to = env->to;
    d->msg.term = env->term;
    rc = get_body(d, env);
    if (rc == 0 && d->hello != NULL) /* ids only: no Raft fields */
      rc = d->msg.from == RAFT_NONE || d->msg.to == RAFT_NONE ||
           d->msg.from >= RAFT_TERM_LIMIT || d->msg.to >= RAFT_TERM_LIMIT
               ? RF_CODEC_ERANGE : 0;
    else if (rc == 0)
      rc = check_msg(&d->msg);
  }
  if (rc != 0) rf_decoded_free(d);
  return rc;
}

void rf_decoded_free(rf_decoded *d) {
  if (d == NULL) return;
  if (d->env_ != NULL) rafting__envelope__free_unpacked(d->env_, NULL);
  free(d->ents_);
  memset(d, 0, sizeof(*d));
}

const char *rf_codec_strerror(int err) { return rf_strerror(err); }
