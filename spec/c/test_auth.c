/*
** test_auth.c -- bearer-token auth: the auth section of the config (inline
** and tokens_file, and each validation), the role every route needs, and
** the token lookup (scheme, unknown, prefix/suffix of a real token).
*/
#include "http/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define NODES "nodes = { { id = 1, peer = '127.0.0.1:7001', " \
              "http = '127.0.0.1:8001' } }, "
#define T_READ "read-token-0123456789"
#define T_WRITE "write-token-0123456789"
#define T_ADMIN "admin-token-0123456789"
#define TOKENS "{ { name = 'r', token = '" T_READ "', role = 'read' }, " \
               "{ name = 'w', token = '" T_WRITE "', role = 'write' }, " \
               "{ name = 'a', token = '" T_ADMIN "', role = 'admin' } }"

static char dir[64];

static void write_file(const char *name, const char *src) {
  char path[128];
  FILE *f;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  if ((f = fopen(path, "w")) == NULL || fputs(src, f) < 0) exit(1);
  fclose(f);
}

/* Load "return { NODES <auth> }"; 0 or -1 with err filled. */
static int load(const char *auth, rf_config *c, char *err, size_t n) {
  char src[2048], path[128];
  snprintf(src, sizeof(src), "return { cluster = 't', " NODES "%s }", auth);
  write_file("cfg.lua", src);
  snprintf(path, sizeof(path), "%s/cfg.lua", dir);
  return rf_config_load(path, c, err, n);
}

static void bad(int line, const char *auth, const char *want) {
  rf_config c;
  char err[1024] = "";
  if (load(auth, &c, err, sizeof(err)) == 0) {
    fprintf(stderr, "FAIL %s:%d: loaded: %s\n", __FILE__, line, auth);
    failures++;
    rf_config_free(&c);
  } else if (strstr(err, want) == NULL) {
    fprintf(stderr, "FAIL %s:%d: '%s' lacks '%s'\n", __FILE__, line, err, want);
    failures++;
  }
}
#define BAD(auth, want) bad(__LINE__, auth, want)

static void test_config(void) {
  rf_config c;
  char err[1024] = "";
  CHECK(load("", &c, err, sizeof(err)) == 0 && c.n_tokens == 0);
  rf_config_free(&c);
  CHECK(load("auth = { tokens = " TOKENS " }", &c, err, sizeof(err)) == 0);
  CHECK(c.n_tokens == 3 && c.tokens[2].role == RF_ROLE_ADMIN &&
        strcmp(c.tokens[1].name, "w") == 0 &&
        strcmp(c.tokens[0].token, T_READ) == 0);
  rf_config_free(&c);
  /* tokens_file: relative to the config's directory */
  write_file("tokens.lua", "local t = " TOKENS "\nreturn t\n");
  CHECK(load("auth = { tokens_file = 'tokens.lua' }", &c, err,
             sizeof(err)) == 0 && c.n_tokens == 3);
  if (c.n_tokens == 0) fprintf(stderr, "  %s\n", err);
  rf_config_free(&c);
  BAD("auth = 1", "auth: expected a table");
  BAD("auth = {}", "tokens or tokens_file is required");
  BAD("auth = { tokens = {} }", "1 to 1024 tokens");
  BAD("auth = { token = {} }", "auth.token: unknown key");
  BAD("auth = { tokens = { {name='a', token='short', role='read'} } }",
      "auth.tokens[1].token: 16 to 1024");
  BAD("auth = { tokens = { {name='a', token='has a space in it!!', "
      "role='read'} } }", "visible ASCII");
  BAD("auth = { tokens = { {name='a', token='" T_READ "', role='root'} } }",
      "auth.tokens[1].role: \"root\"");
  BAD("auth = { tokens = { {name='a', token='" T_READ "', role='read'}, "
      "{name='a', token='" T_WRITE "', role='read'} } }",
      "auth.tokens[2].name: duplicate name");
  BAD("auth = { tokens = { {name='a', token='" T_READ "', role='read'}, "
      "{name='b', token='" T_READ "', role='read'} } }",
      "auth.tokens[2].token: same token as \"a\"");
  BAD("auth = { tokens = { {name='a', role='read'} } }",
      "auth.tokens[1].token: missing");
  BAD("auth = { tokens = { 'x' } }", "auth.tokens[1]: expected a table");
  BAD("auth = { tokens = { {name='a', token='" T_READ "', role='read', "
      "extra=1} } }", "unknown key");
  BAD("auth = { tokens = " TOKENS ", tokens_file = 'tokens.lua' }",
      "not both");
  BAD("auth = { tokens_file = 'missing.lua' }", "missing.lua");
  write_file("loop.lua", "while true do end\n");
  BAD("auth = { tokens_file = 'loop.lua' }", "endless loop");
  write_file("short.lua", "return { {name='x', token='abc', role='read'} }\n");
  BAD("auth = { tokens_file = 'short.lua' }", "short.lua: tokens[1].token");
}

static void test_routes(void) {
  CHECK(rf_auth_required("GET", "/health", 7) == 0);
  CHECK(rf_auth_required("GET", "/status", 7) == RF_ROLE_READ);
  CHECK(rf_auth_required("GET", "/metrics", 8) == RF_ROLE_READ);
  CHECK(rf_auth_required("GET", "/kv", 3) == RF_ROLE_READ);
  CHECK(rf_auth_required("HEAD", "/kv/a", 5) == RF_ROLE_READ);
  CHECK(rf_auth_required("PUT", "/kv/a", 5) == RF_ROLE_WRITE);
  CHECK(rf_auth_required("DELETE", "/kv/a", 5) == RF_ROLE_WRITE);
  CHECK(rf_auth_required("POST", "/cmd/incr", 9) == RF_ROLE_WRITE);
  CHECK(rf_auth_required("GET", "/query/list", 11) == RF_ROLE_READ);
  CHECK(rf_auth_required("GET", "/watch", 6) == RF_ROLE_READ);
  CHECK(rf_auth_required("GET", "/cluster", 8) == RF_ROLE_READ);
  CHECK(rf_auth_required("POST", "/cluster/leader", 15) == RF_ROLE_ADMIN);
  CHECK(rf_auth_required("POST", "/cluster/members", 16) == RF_ROLE_ADMIN);
  CHECK(rf_auth_required("POST", "/snapshot", 9) == RF_ROLE_ADMIN);
  CHECK(rf_auth_required("GET", "/scripts", 8) == RF_ROLE_READ);
  CHECK(rf_auth_required("GET", "/scripts/a.lua", 14) == RF_ROLE_READ);
  CHECK(rf_auth_required("PUT", "/scripts/a.lua", 14) == RF_ROLE_ADMIN);
  CHECK(rf_auth_required("DELETE", "/scripts/a.lua", 14) == RF_ROLE_ADMIN);
  CHECK(rf_auth_required("GET", "/scriptsx", 9) == RF_ROLE_ADMIN);
  /* a prefix only matches whole segments */
  CHECK(rf_auth_required("GET", "/kvx", 4) == RF_ROLE_ADMIN);
  CHECK(rf_auth_required("GET", "/healthz", 8) == RF_ROLE_ADMIN);
}

static int role(const rf_config *c, const char *h) {
  return rf_auth_role(c, h, h ? strlen(h) : 0);
}

static void test_lookup(void) {
  rf_config c;
  char err[1024];
  if (load("auth = { tokens = " TOKENS " }", &c, err, sizeof(err)) != 0) {
    fprintf(stderr, "FAIL: %s\n", err);
    failures++;
    return;
  }
  CHECK(role(&c, "Bearer " T_READ) == RF_ROLE_READ);
  CHECK(role(&c, "Bearer " T_WRITE) == RF_ROLE_WRITE);
  CHECK(role(&c, "bearer  " T_ADMIN " ") == RF_ROLE_ADMIN);
  CHECK(role(&c, NULL) == 0);
  CHECK(role(&c, "") == 0);
  CHECK(role(&c, "Bearer") == 0);
  CHECK(role(&c, "Bearer ") == 0);
  CHECK(role(&c, "Basic " T_ADMIN) == 0);
  CHECK(role(&c, T_ADMIN) == 0);
  CHECK(role(&c, "Bearer admin-token-012345678") == 0);   /* a prefix */
  CHECK(role(&c, "Bearer " T_ADMIN "9") == 0);            /* longer */
  CHECK(role(&c, "Bearer admin-token-0123456788") == 0);  /* last byte */
  CHECK(role(&c, "Bearer Admin-token-0123456789") == 0);  /* first byte */
  rf_config_free(&c);
}

int main(void) {
  strcpy(dir, "/tmp/rf_auth_XXXXXX");
  if (mkdtemp(dir) == NULL) return 1;
  test_config();
  test_routes();
  test_lookup();
  {
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) failures++;
  }
  return check_summary("test_auth");
}
