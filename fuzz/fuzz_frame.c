/*
** fuzz_frame.c -- libFuzzer target: the peer frame decoder (src/net/codec.c).
**
** The input is the packed bytes of one frame (no length prefix).  Decoding
** must give a message or a clean RF_CODEC_E* error; a message that decodes
** must encode again, and that encoding must decode to the same message
** (a Hello to the same ids and address).
** All memory is the codec's: rf_decoded_free() and free() of the encoding.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rafting/codec.h"

#define CLUSTER "fuzz"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_frame: %s\n", what);
  abort();
}

static int same_entries(const raft_msg *a, const raft_msg *b) {
  for (size_t i = 0; i < a->n_entries; i++) {
    const raft_entry *x = &a->entries[i], *y = &b->entries[i];
    if (x->term != y->term || x->index != y->index || x->type != y->type ||
        x->len != y->len || (x->len && memcmp(x->data, y->data, x->len)))
      return 0;
  }
  return 1;
}

static int same(const raft_msg *a, const raft_msg *b) {
  return a->type == b->type && a->from == b->from && a->to == b->to &&
         a->term == b->term && a->index == b->index &&
         a->log_term == b->log_term && a->commit == b->commit &&
         a->reject == b->reject && a->hint_index == b->hint_index &&
         a->hint_term == b->hint_term && a->context == b->context &&
         a->offset == b->offset && a->size == b->size && a->done == b->done &&
         a->data_len == b->data_len &&
         (a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0) &&
         a->n_entries == b->n_entries && same_entries(a, b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rf_decoded d, d2;
  uint8_t *out = NULL;
  size_t len = 0;
  int rc = rf_codec_decode(data, size, CLUSTER, &d);
  if (rc != 0) {
    if (rc > 0 || rf_codec_strerror(rc) == NULL) fail("bad error code");
    rf_decoded_free(&d);
    return 0;
  }
  if (d.hello != NULL) /* a Hello: ids and the address, nothing else */
    rc = rf_codec_encode_hello(CLUSTER, d.msg.from, d.msg.to, d.hello, &out,
                               &len);
  else
    rc = rf_codec_encode(CLUSTER, &d.msg, &out, &len);
  if (rc != 0) fail("a decoded message does not encode");
  if (len < RF_FRAME_HEADER || rf_frame_len(out) != len - RF_FRAME_HEADER)
    fail("bad length prefix");
  if (rf_codec_decode(out + RF_FRAME_HEADER, len - RF_FRAME_HEADER, CLUSTER,
                      &d2) != 0)
    fail("an encoded message does not decode");
  if (!same(&d.msg, &d2.msg)) fail("round trip changed the message");
  if ((d.hello == NULL) != (d2.hello == NULL) ||
      (d.hello != NULL && strcmp(d.hello, d2.hello) != 0))
    fail("round trip changed the hello");
  rf_decoded_free(&d2);
  rf_decoded_free(&d);
  free(out);
  return 0;
}
