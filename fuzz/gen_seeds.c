/*
** gen_seeds.c -- writes the seed corpora of the frame and entry targets
** into fuzz/corpus/{frame,entry}/ (valid inputs made by the encoders, so a
** format change is one re-run away):
**
**   cmake --build build-fuzz --target fuzz_seeds && ./build-fuzz/fuzz_seeds
**
** The http and config seeds are hand-written text files.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rafting/codec.h"
#include "rafting/sm.h"

static void put(const char *target, const char *name, const void *p,
                size_t n) {
  char path[512];
  FILE *f;
  snprintf(path, sizeof path, "%s/corpus/%s/%s", FUZZ_DIR, target, name);
  if ((f = fopen(path, "wb")) == NULL || fwrite(p, 1, n, f) != n ||
      fclose(f) != 0) {
    fprintf(stderr, "fuzz_seeds: cannot write %s\n", path);
    exit(1);
  }
}

static void frame(const char *name, const raft_msg *m) {
  uint8_t *out;
  size_t len;
  if (rf_codec_encode("fuzz", m, &out, &len) != 0) {
    fprintf(stderr, "fuzz_seeds: cannot encode %s\n", name);
    exit(1);
  }
  put("frame", name, out + RF_FRAME_HEADER, len - RF_FRAME_HEADER);
  free(out);
}

static void hello(void) {
  uint8_t *out;
  size_t len;
  if (rf_codec_encode_hello("fuzz", 4, 1, "[::1]:7004", &out, &len) != 0) {
    fprintf(stderr, "fuzz_seeds: cannot encode hello\n");
    exit(1);
  }
  put("frame", "hello", out + RF_FRAME_HEADER, len - RF_FRAME_HEADER);
  free(out);
}

static void frames(void) {
  static const uint8_t cmd[] = "\x01put";
  raft_entry ents[3] = {
      {.term = 2, .index = 5, .type = RAFT_ENTRY_NOOP},
      {.term = 2, .index = 6, .type = RAFT_ENTRY_NORMAL, .len = 4,
       .data = cmd},
      {.term = 3, .index = 7, .type = RAFT_ENTRY_NORMAL, .len = 1,
       .data = cmd}};
  raft_msg m = {.from = 1, .to = 2, .term = 3};
  m.type = RAFT_MSG_VOTE, m.index = 9, m.log_term = 2;
  frame("vote", &m);
  m.type = RAFT_MSG_PREVOTE_RESP, m.reject = 1;
  frame("prevote_resp", &m);
  memset(&m, 0, sizeof m);
  m.from = 1, m.to = 2, m.term = 3, m.type = RAFT_MSG_APPEND;
  m.index = 4, m.log_term = 2, m.commit = 4, m.n_entries = 3;
  m.entries = ents;
  frame("append", &m);
  m.n_entries = 0, m.entries = NULL; /* a heartbeat-like append */
  frame("append_empty", &m);
  memset(&m, 0, sizeof m);
  m.from = 2, m.to = 1, m.term = 3, m.type = RAFT_MSG_APPEND_RESP;
  m.index = 7, m.reject = 1, m.hint_index = 3, m.hint_term = 1;
  frame("append_resp", &m);
  memset(&m, 0, sizeof m);
  m.from = 1, m.to = 3, m.term = 3, m.type = RAFT_MSG_HEARTBEAT;
  m.commit = 7, m.context = 42;
  frame("heartbeat", &m);
  memset(&m, 0, sizeof m);
  m.from = 1, m.to = 3, m.term = 3, m.type = RAFT_MSG_SNAPSHOT;
  m.index = 100, m.log_term = 3, m.offset = 0, m.size = 5;
  m.data = cmd, m.data_len = 4, m.done = 0;
  frame("snapshot", &m);
  memset(&m, 0, sizeof m);
  m.from = 1, m.to = 2, m.term = 4, m.type = RAFT_MSG_TIMEOUT_NOW;
  frame("timeout_now", &m);
  hello();
}

/* Entry seeds start with the target's mode byte (see fuzz_entry.c). */
static void entry(const char *name, int mode, const rf_buf *b) {
  char *p = malloc(b->n + 1);
  p[0] = (char)mode;
  memcpy(p + 1, b->p, b->n);
  put("entry", name, p, b->n + 1);
  free(p);
}

static void entries(void) {
  rf_sm_arg kv[2] = {{"key", "k\0y", 3}, {"value", "\xff\x00v", 3}};
  const char *json = "{\"key\":\"a\",\"value\":\"b\",\"n\":[1,2.5,-3e10,null,"
                     "true,{\"x\":{}}],\"s\":\"\\u00e9\\ud83d\\ude00\"}";
  rf_buf b = {0};
  rf_sm_encode_args(&b, "put", 1700000000000u, kv, 2);
  entry("args_put", 0, &b);
  b.n = 0;
  rf_sm_encode_args(&b, "echo", 1, kv, 1);
  entry("args_echo", 0, &b);
  b.n = 0;
  rf_sm_encode_json(&b, "echo", 2, json, strlen(json));
  entry("json_echo", 0, &b);
  b.n = 0;
  rf_buf_add(&b, json, strlen(json));
  entry("json_cmd", 1, &b);
  entry("json_query", 2, &b);
  b.n = 0;
  rf_buf_str(&b, "[[[[]]],{\"a\":[{}]},\"\",0,1.5e300]");
  entry("json_nested", 1, &b);
  rf_buf_free(&b);
}

int main(void) {
  frames();
  entries();
  return 0;
}
