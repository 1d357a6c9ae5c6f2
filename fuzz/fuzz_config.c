/*
** fuzz_config.c -- libFuzzer target: the config loader (src/lua/config.c)
** on arbitrary Lua source.
**
** The input is written to a file in a private temp directory (removed at
** exit) and loaded:
** rf_config_load() must give a valid config or -1 with a message naming
** the file; a loaded config must satisfy what the loader promises (a
** cluster name, nodes with distinct ids, election_ticks > heartbeat_ticks).
** The loader's instruction budget stops an endless loop after about a
** second (several under ASan): run with -timeout=30 or more.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rafting/config.h"

static char dir[] = "/tmp/fuzz_config.XXXXXX", path[64];

static void cleanup(void) {
  unlink(path);
  rmdir(dir);
}

static void fail(const char *what) {
  fprintf(stderr, "fuzz_config: %s\n", what);
  abort();
}

static void check(const rf_config *c) {
  if (c->cluster == NULL || c->cluster[0] == '\0') fail("no cluster name");
  if (c->n_nodes == 0 || c->nodes == NULL) fail("no nodes");
  for (size_t i = 0; i < c->n_nodes; i++) {
    if (c->nodes[i].id == 0) fail("node id 0");
    if (rf_config_node(c, c->nodes[i].id) != &c->nodes[i]) fail("dup id");
    if (!c->nodes[i].peer_host || !c->nodes[i].http_host) fail("no host");
  }
  if (c->election_ticks <= c->heartbeat_ticks) fail("election <= heartbeat");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512];
  rf_config c;
  FILE *f;
  if (path[0] == '\0') {
    if (mkdtemp(dir) == NULL) fail("mkdtemp");
    snprintf(path, sizeof path, "%s/c.lua", dir);
    atexit(cleanup);
  }
  if ((f = fopen(path, "wb")) == NULL) fail("cannot write the input");
  if (fwrite(data, 1, size, f) != size || fclose(f) != 0) fail("write");
  err[0] = '\0';
  if (rf_config_load(path, &c, err, sizeof err) == 0) {
    check(&c);
    rf_config_free(&c);
  } else if (err[0] == '\0') {
    fail("an error without a message");
  }
  return 0;
}
