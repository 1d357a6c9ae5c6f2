/*
** auth.c -- bearer tokens and the role each route needs (see auth.h).
*/
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http/auth.h"

/* GET/HEAD of a path under prefix need read_role, other methods
** write_role.  A path no row names needs admin: a new route is closed
** until it is added here. */
typedef struct rule {
  const char *prefix; /* matches itself and everything below "prefix/" */
  int read_role, write_role;
} rule;

static const rule rules[] = {
  {"/health", 0, 0},
  {"/status", RF_ROLE_READ, RF_ROLE_ADMIN},
  {"/metrics", RF_ROLE_READ, RF_ROLE_ADMIN},
  {"/kv", RF_ROLE_READ, RF_ROLE_WRITE},
  {"/cmd", RF_ROLE_WRITE, RF_ROLE_WRITE},
  {"/query", RF_ROLE_READ, RF_ROLE_READ},
  {"/watch", RF_ROLE_READ, RF_ROLE_ADMIN},
  {"/scripts", RF_ROLE_READ, RF_ROLE_ADMIN}, /* deploying is an admin's */
  {"/cluster", RF_ROLE_READ, RF_ROLE_ADMIN}, /* membership, leadership */
};

static const char *const role_names[] = {"none", "read", "write", "admin"};

int rf_auth_required(const char *method, const char *path, size_t len) {
  int rd = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
    size_t n = strlen(rules[i].prefix);
    if (len >= n && memcmp(path, rules[i].prefix, n) == 0 &&
        (len == n || path[n] == '/'))
      return rd ? rules[i].read_role : rules[i].write_role;
  }
  return RF_ROLE_ADMIN;
}

/* 1 if a[0..an) equals b[0..bn), in time that depends on bn only. */
static int ct_equal(const char *a, size_t an, const char *b, size_t bn) {
  unsigned d = an != bn;
  for (size_t i = 0; i < bn; i++)
    d |= (unsigned char)b[i] ^ (unsigned char)(i < an ? a[i] : 0);
  return d == 0;
}

int rf_auth_role(const rf_config *cfg, const char *h, size_t len) {
  int role = 0;
  if (h == NULL || len < 7 || strncasecmp(h, "Bearer ", 7) != 0) return 0;
  h += 7, len -= 7;
  while (len && *h == ' ') h++, len--;
  while (len && (h[len - 1] == ' ' || h[len - 1] == '\t')) len--;
  if (len == 0) return 0;
  for (size_t i = 0; i < cfg->n_tokens; i++) { /* every one: no early exit */
    const rf_token_conf *t = &cfg->tokens[i];
    int eq = ct_equal(h, len, t->token, strlen(t->token));
    role |= -eq & t->role; /* tokens are unique: one matches at most */
  }
  return role;
}

int rf_auth_allow(const rf_config *cfg, rf_http_req *req) {
  int need, have;
  const char *h = req->authorization;
  char msg[128];
  if (cfg->n_tokens == 0) return 1;
  if ((need = rf_auth_required(req->method, req->path, req->path_len)) == 0)
    return 1;
  if ((have = rf_auth_role(cfg, h, h ? strlen(h) : 0)) == 0) {
    rf_http_add_header(req, "WWW-Authenticate", h == NULL
        ? "Bearer realm=\"rafting\""
        : "Bearer realm=\"rafting\", error=\"invalid_token\"");
    rf_http_json_error(req, 401, "unauthorized", h == NULL
        ? "this node wants 'Authorization: Bearer <token>'"
        : "the bearer token is missing, malformed or unknown");
    return 0;
  }
  if (have < need) {
    snprintf(msg, sizeof(msg), "this needs the %s role; the token has %s",
             role_names[need], role_names[have]);
    rf_http_json_error(req, 403, "forbidden", msg);
    return 0;
  }
  return 1;
}
