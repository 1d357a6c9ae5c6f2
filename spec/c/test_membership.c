/*
** test_membership.c -- which membership a node starts with
** (src/membership.c, rf_membership_open): the config's nodes bootstrap an
** empty data directory once and are stored; later starts use the stored
** membership whatever the config says; --join needs an empty directory
** and has no bootstrap voters; --peer/--http override and are stored; a
** node with no address, a used directory for --join and a corrupt members
** file are refused with a message.  Memory storage stores nothing.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "membership.h"
#include "rafting/config.h"

#include "check.h"

static char root[256], cfg_path[512], dir[512];

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    exit(1);
  }
  fputs(text, f);
  fclose(f);
}

static void load(rf_config *c, const char *nodes) {
  char text[1024], err[512];
  snprintf(text, sizeof(text), "return { cluster = 't', nodes = { %s }, "
           "storage = '%s/d%%d' }", nodes, root);
  write_text(cfg_path, text);
  if (rf_config_load(cfg_path, c, err, sizeof(err)) < 0) {
    fprintf(stderr, "config: %s\n", err);
    exit(1);
  }
}

static int open_as(const rf_config *c, uint64_t id, int join, const char *peer,
                   const char *http, rf_membership **m, char *err) {
  rf_membership_opts o = {c, id, NULL, join, peer, http, NULL, NULL};
  char path[600];
  snprintf(path, sizeof(path), "%s/d%llu", root, (unsigned long long)id);
  o.data_dir = path;
  return rf_membership_open(&o, m, err, 512);
}

static const char *three =
  "{ id = 1, peer = '127.0.0.1:7001', http = '127.0.0.1:8001' },"
  "{ id = 2, peer = '127.0.0.1:7002', http = '127.0.0.1:8002' },"
  "{ id = 3, peer = '127.0.0.1:7003', http = '127.0.0.1:8003' }";

static void test_bootstrap_once(void) {
  rf_config c;
  rf_membership *m;
  char err[512];
  size_t n;
  const uint64_t *boot;
  load(&c, three);
  CHECK(open_as(&c, 1, 0, NULL, NULL, &m, err) == 0);
  boot = rf_membership_boot(m, &n);
  CHECK(n == 3 && boot[0] == 1 && boot[2] == 3);
  CHECK(rf_membership_config(m)->n_nodes == 3);
  mkdir(dir, 0700);
  CHECK(rf_membership_store(m, err, sizeof(err)) == 0);
  rf_membership_free(m);
  rf_config_free(&c);
  /* the config now says node 1 is elsewhere and node 3 is gone */
  load(&c, "{ id = 1, peer = '127.0.0.1:9001', http = '127.0.0.1:9002' },"
           "{ id = 2, peer = '127.0.0.1:7002', http = '127.0.0.1:8002' }");
  CHECK(open_as(&c, 1, 0, NULL, NULL, &m, err) == 0);
  boot = rf_membership_boot(m, &n);
  CHECK(n == 3);
  CHECK(rf_config_node(rf_membership_config(m), 1)->peer_port == 7001);
  CHECK(rf_config_node(rf_membership_config(m), 3) != NULL);
  rf_membership_free(m);
  /* --join into it: refused, with the reason */
  CHECK(open_as(&c, 1, 1, "127.0.0.1:1", "127.0.0.1:2", &m, err) ==
        RF_ECONFIG);
  CHECK(strstr(err, "already holds a membership") != NULL);
  /* --peer overrides, and is stored */
  CHECK(open_as(&c, 1, 0, "127.0.0.1:7101", NULL, &m, err) == 0);
  CHECK(rf_config_node(rf_membership_config(m), 1)->peer_port == 7101);
  CHECK(rf_config_node(rf_membership_config(m), 1)->http_port == 8001);
  CHECK(rf_membership_store(m, err, sizeof(err)) == 0);
  rf_membership_free(m);
  CHECK(open_as(&c, 1, 0, NULL, NULL, &m, err) == 0);
  CHECK(rf_config_node(rf_membership_config(m), 1)->peer_port == 7101);
  rf_membership_free(m);
  rf_config_free(&c);
}

static void test_join(void) {
  rf_config c;
  rf_membership *m;
  char err[512], path[600];
  size_t n;
  load(&c, three);
  /* no address: not in the config, nothing stored */
  CHECK(open_as(&c, 4, 0, NULL, NULL, &m, err) == RF_ECONFIG);
  CHECK(strstr(err, "has no address") != NULL);
  CHECK(open_as(&c, 4, 1, "127.0.0.1:7004", NULL, &m, err) == RF_ECONFIG);
  CHECK(open_as(&c, 4, 1, "127.0.0.1:7004", "nowhere:1", &m, err) ==
        RF_ECONFIG);
  /* a used directory */
  snprintf(path, sizeof(path), "%s/d4", root);
  mkdir(path, 0700);
  snprintf(path, sizeof(path), "%s/d4/wal", root);
  mkdir(path, 0700);
  CHECK(open_as(&c, 4, 1, "127.0.0.1:7004", "127.0.0.1:8004", &m, err) ==
        RF_ECONFIG);
  CHECK(strstr(err, "not empty") != NULL);
  rmdir(path);
  CHECK(open_as(&c, 4, 1, "127.0.0.1:7004", "127.0.0.1:8004", &m, err) == 0);
  rf_membership_boot(m, &n);
  CHECK(n == 0); /* it joins: no bootstrap voters */
  CHECK(rf_membership_config(m)->n_nodes == 1);
  CHECK(rf_membership_store(m, err, sizeof(err)) == 0);
  rf_membership_free(m);
  /* later: --config --node only */
  CHECK(open_as(&c, 4, 0, NULL, NULL, &m, err) == 0);
  rf_membership_boot(m, &n);
  CHECK(n == 0);
  CHECK(rf_config_node(rf_membership_config(m), 4)->http_port == 8004);
  rf_membership_free(m);
  /* a corrupt members file */
  snprintf(path, sizeof(path), "%s/d4/members", root);
  write_text(path, "rafting-members 1\nmember 4 x\n");
  CHECK(open_as(&c, 4, 0, NULL, NULL, &m, err) == RF_ESTORAGE);
  CHECK(strstr(err, "members:2") != NULL);
  rf_config_free(&c);
}

static void test_memory(void) {
  rf_config c;
  rf_membership *m;
  rf_membership_opts o;
  char err[512];
  size_t n;
  load(&c, three);
  memset(&o, 0, sizeof(o));
  o.cfg = &c;
  o.id = 2;
  CHECK(rf_membership_open(&o, &m, err, sizeof(err)) == 0);
  rf_membership_boot(m, &n);
  CHECK(n == 3);
  CHECK(rf_membership_store(m, err, sizeof(err)) == 0); /* nothing to do */
  rf_membership_free(m);
  o.id = 5;
  o.join = 1;
  o.peer = "127.0.0.1:7005";
  o.http = "127.0.0.1:8005";
  CHECK(rf_membership_open(&o, &m, err, sizeof(err)) == 0);
  rf_membership_boot(m, &n);
  CHECK(n == 0);
  rf_membership_free(m);
  rf_config_free(&c);
}

/* The snapshot hooks: a blob of the configuration's members, and back. */
static void test_blob(void) {
  rf_config c;
  rf_membership *a, *b;
  rf_membership_opts o;
  raft_conf conf = {2, 1, {1, 3}, {2}};
  char err[512];
  rf_buf blob;
  load(&c, three);
  memset(&o, 0, sizeof(o));
  o.cfg = &c;
  o.id = 1;
  CHECK(rf_membership_open(&o, &a, err, sizeof(err)) == 0);
  o.id = 9;
  o.join = 1;
  o.peer = "127.0.0.1:7009";
  o.http = "127.0.0.1:8009";
  CHECK(rf_membership_open(&o, &b, err, sizeof(err)) == 0);
  rf_buf_init(&blob);
  CHECK(rf_membership_blob(a, &conf, &blob) == 0);
  CHECK(rf_membership_blob_at(a, 1, &blob) == RF_EINVAL); /* no driver */
  CHECK(rf_config_node(rf_membership_config(b), 3) == NULL);
  rf_membership_blob_restored(b, (const uint8_t *)blob.p, blob.n);
  CHECK(rf_config_node(rf_membership_config(b), 3)->http_port == 8003);
  CHECK(rf_config_node(rf_membership_config(b), 2)->peer_port == 7002);
  CHECK(rf_membership_blob_restore(b, (const uint8_t *)blob.p, blob.n - 1) ==
        RF_EINVAL);
  rf_membership_blob_restored(b, NULL, 0); /* none: nothing happens */
  CHECK(rf_membership_config(b)->n_nodes == 4);
  rf_buf_free(&blob);
  rf_membership_free(a);
  rf_membership_free(b);
  rf_config_free(&c);
}

int main(void) {
  if (check_tmpdir(root, sizeof(root), "membership") < 0) return 1;
  snprintf(cfg_path, sizeof(cfg_path), "%s/c.lua", root);
  snprintf(dir, sizeof(dir), "%s/d1", root);
  test_bootstrap_once();
  test_join();
  test_memory();
  test_blob();
  check_rmtree(root);
  return check_summary("test_membership");
}
