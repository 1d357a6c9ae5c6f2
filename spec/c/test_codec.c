/*
** test_codec.c -- raft_msg <-> frame round trips and the frames the
** decoder must refuse (wrong cluster, garbage, no/unknown body, fields out
** of range).  Exits non-zero and names every failed check.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft.pb-c.h"
#include "rafting/codec.h"

#include "check.h"
#include "raftmsg.h"

#define CHECK_RC(got, want) CHECK_STATUS(got, want, rf_codec_strerror)

static const raft_entry ents[3] = {
  {7, 11, RAFT_ENTRY_NORMAL, 5, (const uint8_t *)"a\0b\0c"},
  {7, 12, RAFT_ENTRY_NOOP, 0, NULL},
  {8, 13, RAFT_ENTRY_CONF, 3, (const uint8_t *)"xyz"},
};

/* One message of every type, only the fields that type carries set. */
static const raft_msg msgs[] = {
  {.type = RAFT_MSG_PREVOTE, .term = 9, .index = 12, .log_term = 7},
  {.type = RAFT_MSG_PREVOTE_RESP, .term = 9, .reject = 1},
  {.type = RAFT_MSG_VOTE, .term = 9, .index = 12, .log_term = 7},
  {.type = RAFT_MSG_VOTE_RESP, .term = 9},
  {.type = RAFT_MSG_APPEND, .term = 8, .index = 10, .log_term = 6,
   .commit = 9, .n_entries = 3, .entries = ents},
  {.type = RAFT_MSG_APPEND, .term = 8, .index = 13, .log_term = 8,
   .commit = 13},
  {.type = RAFT_MSG_APPEND_RESP, .term = 8, .reject = 1, .index = 10,
   .hint_index = 8, .hint_term = 5},
  {.type = RAFT_MSG_APPEND_RESP, .term = 8, .index = 13},
  {.type = RAFT_MSG_HEARTBEAT, .term = 8, .commit = 13, .context = 99},
  {.type = RAFT_MSG_HEARTBEAT_RESP, .term = 8, .context = 99, .index = 12},
  {.type = RAFT_MSG_SNAPSHOT, .term = 8, .index = 100, .log_term = 8},
  {.type = RAFT_MSG_SNAPSHOT_RESP, .term = 8, .reject = 1, .index = 100},
  {.type = RAFT_MSG_TIMEOUT_NOW, .term = RAFT_TERM_LIMIT - 1},
};
#define N_MSGS (sizeof(msgs) / sizeof(msgs[0]))

static void test_round_trip(void) {
  for (size_t i = 0; i < N_MSGS; i++) {
    raft_msg m = msgs[i];
    uint8_t *buf = NULL;
    size_t len = 0;
    rf_decoded d;
    m.from = 1;
    m.to = UINT64_MAX; /* ids are full 64-bit */
    CHECK_RC(rf_codec_encode("alpha", &m, &buf, &len), 0);
    if (buf == NULL) continue;
    CHECK(len >= RF_FRAME_HEADER);
    CHECK(rf_frame_len(buf) == len - RF_FRAME_HEADER);
    CHECK_RC(rf_codec_decode(buf + RF_FRAME_HEADER, len - RF_FRAME_HEADER,
                             "alpha", &d), 0);
    if (!msg_equal(&m, &d.msg)) {
      fprintf(stderr, "FAIL round trip of message %zu (type %d)\n", i,
              (int)m.type);
      failures++;
    }
    rf_decoded_free(&d);
    free(buf);
  }
}

/* Many entries, binary data of every length 0..299. */
static void test_big_append(void) {
  enum { N = 300 };
  raft_entry *es = calloc(N, sizeof(*es));
  uint8_t *data = malloc(N);
  raft_msg m = {.type = RAFT_MSG_APPEND, .from = 2, .to = 3, .term = 5,
                .index = 1000, .log_term = 4, .commit = 999};
  uint8_t *buf;
  size_t len;
  rf_decoded d;
  for (int i = 0; i < N; i++) data[i] = (uint8_t)(i * 7);
  for (int i = 0; i < N; i++)
    es[i] = (raft_entry){4 + (uint64_t)(i >= N / 2), 1001 + (uint64_t)i,
                         i % 3, (size_t)i, data};
  m.n_entries = N;
  m.entries = es;
  CHECK_RC(rf_codec_encode("alpha", &m, &buf, &len), 0);
  CHECK_RC(rf_codec_decode(buf + 4, len - 4, "alpha", &d), 0);
  CHECK(msg_equal(&m, &d.msg));
  free(buf); /* decoded entries must not point into the frame */
  CHECK(d.msg.n_entries == N && d.msg.entries[N - 1].len == N - 1 &&
        memcmp(d.msg.entries[N - 1].data, data, N - 1) == 0);
  rf_decoded_free(&d);
  free(es);
  free(data);
}

static void test_encode_rejects(void) {
  raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 3};
  raft_entry bad = ents[0];
  uint8_t *buf = NULL;
  size_t len;
  CHECK_RC(rf_codec_encode(NULL, &m, &buf, &len), RF_CODEC_EINVAL);
  CHECK_RC(rf_codec_encode("", &m, &buf, &len), RF_CODEC_EINVAL);
  m.type = 0;
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), RF_CODEC_ETYPE);
  m.type = RAFT_MSG_TYPE_MAX + 1;
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), RF_CODEC_ETYPE);
  m.type = RAFT_MSG_HEARTBEAT;
  m.to = 0;
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), RF_CODEC_ERANGE);
  m.to = 1; /* to self */
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), RF_CODEC_ERANGE);
  m.to = 2;
  m.n_entries = 1; /* entries only on appends */
  m.entries = ents;
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), RF_CODEC_ERANGE);
  m.type = RAFT_MSG_APPEND;
  m.term = 7;
  m.index = 10;
  m.log_term = 6;
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), 0);
  free(buf);
  buf = NULL;
  bad.type = 3;
  m.entries = &bad;
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), RF_CODEC_ERANGE);
  bad = ents[0];
  bad.index = 12; /* prev is 10: a gap */
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), RF_CODEC_ERANGE);
  bad = ents[0];
  bad.term = 8; /* newer than the message term */
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), RF_CODEC_ERANGE);
  bad = ents[0];
  bad.term = 5; /* older than prev's term */
  CHECK_RC(rf_codec_encode("a", &m, &buf, &len), RF_CODEC_ERANGE);
  CHECK(buf == NULL);
}

/* Pack an envelope built by hand, bypassing the encoder's checks. */
static int decode_env(const Rafting__Envelope *env, const uint8_t *extra,
                      size_t nextra) {
  size_t n = rafting__envelope__get_packed_size(env);
  uint8_t *buf = malloc(n + nextra + 1);
  rf_decoded d;
  int rc;
  rafting__envelope__pack(env, buf);
  if (nextra) memcpy(buf + n, extra, nextra);
  rc = rf_codec_decode(buf, n + nextra, "alpha", &d);
  rf_decoded_free(&d);
  free(buf);
  return rc;
}

static void test_decode_rejects(void) {
  static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0x0f};
  static const uint8_t unknown_case[] = {0xf2, 0x01, 0x00}; /* field 30 */
  raft_msg m = msgs[4];
  Rafting__Envelope env = RAFTING__ENVELOPE__INIT;
  Rafting__AppendEntries app = RAFTING__APPEND_ENTRIES__INIT;
  Rafting__Entry e = RAFTING__ENTRY__INIT, *ep = &e;
  uint8_t *buf;
  size_t len;
  rf_decoded d;

  m.from = 1;
  m.to = 2;
  CHECK_RC(rf_codec_encode("alpha", &m, &buf, &len), 0);
  CHECK_RC(rf_codec_decode(buf + 4, len - 4, "beta", &d), RF_CODEC_ECLUSTER);
  CHECK(d.env_ == NULL && d.ents_ == NULL); /* nothing left to free */
  CHECK_RC(rf_codec_decode(buf + 4, len - 5, "alpha", &d), RF_CODEC_EUNPACK);
  free(buf);
  CHECK_RC(rf_codec_decode(garbage, sizeof(garbage), "alpha", &d),
           RF_CODEC_EUNPACK);
  CHECK(rf_codec_decode(NULL, 0, "alpha", &d) < 0); /* empty frame */

  env.cluster = "alpha";
  env.from = 1;
  env.to = 2;
  env.term = 3;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ETYPE); /* no body */
  CHECK_RC(decode_env(&env, unknown_case, sizeof(unknown_case)),
           RF_CODEC_ETYPE);

  env.body_case = RAFTING__ENVELOPE__BODY_APPEND;
  env.append = &app;
  app.n_entries = 1;
  app.entries = &ep;
  e.index = 1;
  e.term = 3;
  CHECK_RC(decode_env(&env, NULL, 0), 0);
  e.type = (Rafting__EntryType)7;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);
  e.type = RAFTING__ENTRY_TYPE__ENTRY_CONF;
  e.index = 5; /* prev is 0: a gap */
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);
  e.index = 1;
  env.to = 0;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);
  env.to = 1; /* from == to */
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);
  env.to = 2;
  env.from = 0;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);

  memset(&d, 0, sizeof(d));
  rf_decoded_free(&d); /* harmless on an empty one */
  rf_decoded_free(NULL);
}

/* A term or index at or above 2^63 is malformed in every message: the
** term-2^64-1 heartbeat of issue 8 would make the next term wrap to 0. */
static void test_terms_below_2_63(void) {
  Rafting__Envelope env = RAFTING__ENVELOPE__INIT;
  Rafting__Heartbeat hb = RAFTING__HEARTBEAT__INIT;
  Rafting__AppendEntries app = RAFTING__APPEND_ENTRIES__INIT;
  Rafting__InstallSnapshot snap = RAFTING__INSTALL_SNAPSHOT__INIT;
  raft_msg m = msgs[0];
  uint8_t *buf = NULL;
  size_t len;

  env.cluster = "alpha";
  env.from = 1;
  env.to = 2;
  env.body_case = RAFTING__ENVELOPE__BODY_HEARTBEAT;
  env.heartbeat = &hb;
  env.term = UINT64_MAX;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);
  env.term = RAFT_TERM_LIMIT;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);
  env.term = RAFT_TERM_LIMIT - 1;
  CHECK_RC(decode_env(&env, NULL, 0), 0);
  hb.commit = RAFT_TERM_LIMIT;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);

  env.term = 3;
  env.body_case = RAFTING__ENVELOPE__BODY_APPEND;
  env.append = &app;
  app.prev_log_index = RAFT_TERM_LIMIT;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);
  app.prev_log_index = 1;
  app.prev_log_term = UINT64_MAX;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);

  env.body_case = RAFTING__ENVELOPE__BODY_SNAPSHOT;
  env.snapshot = &snap;
  snap.snapshot_index = 10;
  snap.snapshot_term = 3;
  snap.size = UINT64_MAX; /* the declared size of a 16 EiB snapshot */
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);
  snap.size = 100;
  snap.offset = RAFT_TERM_LIMIT;
  CHECK_RC(decode_env(&env, NULL, 0), RF_CODEC_ERANGE);

  m.from = 1;
  m.to = 2;
  m.term = RAFT_TERM_LIMIT; /* the encoder refuses what the decoder would */
  CHECK_RC(rf_codec_encode("alpha", &m, &buf, &len), RF_CODEC_ERANGE);
  CHECK(buf == NULL);
}

static void test_frame_len(void) {
  uint8_t p[4];
  rf_frame_put_len(p, 0x01020304u);
  CHECK(p[0] == 1 && p[1] == 2 && p[2] == 3 && p[3] == 4);
  CHECK(rf_frame_len(p) == 0x01020304u);
  rf_frame_put_len(p, 0xffffffffu);
  CHECK(rf_frame_len(p) == 0xffffffffu);
}

int main(void) {
  test_frame_len();
  test_round_trip();
  test_big_append();
  test_encode_rejects();
  test_decode_rejects();
  test_terms_below_2_63();
  return check_summary("test_codec");
}
