/*
** conf.c -- membership configurations: encoding, checks, changes.
*/
#include <string.h>

#include "rafting/bytes.h"
#include "rafting/raft.h"
#include "conf.h"

#define CONF_VERSION 1
#define CONF_HEAD 3

static int has(const uint64_t *ids, size_t n, uint64_t id) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] == id) return 1;
  return 0;
}

int raft_conf_is_voter(const raft_conf *c, uint64_t id) {
  return has(c->voters, c->n_voters, id);
}

int raft_conf_is_learner(const raft_conf *c, uint64_t id) {
  return has(c->learners, c->n_learners, id);
}

size_t rconf_members(const raft_conf *c) { return c->n_voters + c->n_learners; }

int raft_conf_check(const raft_conf *c) {
  if (c->n_voters > RAFT_MAX_NODES || c->n_learners > RAFT_MAX_NODES ||
      rconf_members(c) > RAFT_MAX_NODES)
    return RAFT_EINVAL;
  for (size_t i = 0; i < c->n_voters; i++)
    if (c->voters[i] == RAFT_NONE || has(c->voters, i, c->voters[i]))
      return RAFT_EINVAL;
  for (size_t i = 0; i < c->n_learners; i++)
    if (c->learners[i] == RAFT_NONE || has(c->learners, i, c->learners[i]) ||
        raft_conf_is_voter(c, c->learners[i]))
      return RAFT_EINVAL;
  return RAFT_OK;
}

size_t raft_conf_size(const raft_conf *c) {
  return CONF_HEAD + 8 * rconf_members(c);
}

size_t raft_conf_encode(const raft_conf *c, uint8_t *buf, size_t cap) {
  size_t len = raft_conf_size(c), i;
  uint8_t *p = buf + CONF_HEAD;
  if (cap < len || raft_conf_check(c) != RAFT_OK) return 0;
  buf[0] = CONF_VERSION;
  buf[1] = (uint8_t)c->n_voters;
  buf[2] = (uint8_t)c->n_learners;
  for (i = 0; i < c->n_voters; i++, p += 8) rf_put_le64(p, c->voters[i]);
  for (i = 0; i < c->n_learners; i++, p += 8) rf_put_le64(p, c->learners[i]);
  return len;
}

int raft_conf_decode(const uint8_t *data, size_t len, raft_conf *out) {
  const uint8_t *p = data + CONF_HEAD;
  size_t i;
  memset(out, 0, sizeof(*out));
  if (data == NULL || len < CONF_HEAD || data[0] != CONF_VERSION)
    return RAFT_EINVAL;
  out->n_voters = data[1];
  out->n_learners = data[2];
  if (out->n_voters > RAFT_MAX_NODES || out->n_learners > RAFT_MAX_NODES ||
      len < raft_conf_size(out) ||
      len - raft_conf_size(out) > RAFT_CONF_CONTEXT_MAX)
    return RAFT_EINVAL;
  for (i = 0; i < out->n_voters; i++, p += 8)
    out->voters[i] = rf_get_le64(p);
  for (i = 0; i < out->n_learners; i++, p += 8)
    out->learners[i] = rf_get_le64(p);
  return raft_conf_check(out);
}

int raft_conf_context(const uint8_t *data, size_t len, const uint8_t **ctx,
                      size_t *ctx_len) {
  raft_conf c;
  size_t at;
  *ctx = NULL;
  *ctx_len = 0;
  if (raft_conf_decode(data, len, &c) != RAFT_OK) return RAFT_EINVAL;
  if ((at = raft_conf_size(&c)) < len) {
    *ctx = data + at;
    *ctx_len = len - at;
  }
  return RAFT_OK;
}

static void drop(uint64_t *ids, size_t *n, uint64_t id) {
  for (size_t i = 0; i < *n; i++)
    if (ids[i] == id) {
      memmove(ids + i, ids + i + 1, (*n - i - 1) * sizeof(*ids));
      (*n)--;
      return;
    }
}

int rconf_apply(const raft_conf *cur, const raft_conf_change *c,
                raft_conf *out) {
  int voter = raft_conf_is_voter(cur, c->id);
  int learner = raft_conf_is_learner(cur, c->id);
  *out = *cur;
  if (c->id == RAFT_NONE || c->id >= RAFT_TERM_LIMIT) return RAFT_EINVAL;
  switch (c->op) {
  case RAFT_CONF_ADD_LEARNER:
    if (voter || learner || rconf_members(cur) >= RAFT_MAX_NODES)
      return RAFT_EINVAL;
    out->learners[out->n_learners++] = c->id;
    return RAFT_OK;
  case RAFT_CONF_ADD_VOTER:
    if (voter || (!learner && rconf_members(cur) >= RAFT_MAX_NODES))
      return RAFT_EINVAL;
    drop(out->learners, &out->n_learners, c->id);
    out->voters[out->n_voters++] = c->id;
    return RAFT_OK;
  case RAFT_CONF_REMOVE:
    if (learner) {
      drop(out->learners, &out->n_learners, c->id);
      return RAFT_OK;
    }
    if (!voter || cur->n_voters == 1) return RAFT_EINVAL; /* keep one voter */
    drop(out->voters, &out->n_voters, c->id);
    return RAFT_OK;
  default: return RAFT_EINVAL;
  }
}

size_t rconf_voter_diff(const raft_conf *a, const raft_conf *b) {
  size_t d = 0, i;
  for (i = 0; i < a->n_voters; i++) d += !raft_conf_is_voter(b, a->voters[i]);
  for (i = 0; i < b->n_voters; i++) d += !raft_conf_is_voter(a, b->voters[i]);
  return d;
}
