/*
** wal_record.c -- the WAL's record codec (layout in wal_internal.h).
**
** Pure functions over caller-owned buffers: encoding writes WAL_HDR plus the
** payload at out (the caller sized it); decoding validates both checksums
** and points r->data into the input.  Checksums are XXH3-64 from libxxhash
** (stable across versions since 0.8.0).
*/
#include <string.h>

#include <xxhash.h>

#include "rafting/bytes.h"
#include "wal_internal.h"

size_t wal_encode(uint8_t *out, int type, int sub, uint64_t index,
                  uint64_t term, const void *data, size_t len) {
  rf_put_le32(out, (uint32_t)len);
  out[4] = (uint8_t)type;
  out[5] = (uint8_t)sub;
  out[6] = out[7] = 0;
  rf_put_le64(out + 8, index);
  rf_put_le64(out + 16, term);
  if (len > 0) memcpy(out + WAL_HDR, data, len);
  rf_put_le64(out + 24, XXH3_64bits(out + WAL_HDR, len));
  rf_put_le64(out + 32, XXH3_64bits(out, 32));
  return WAL_HDR + len;
}

size_t wal_encode_hs(uint8_t *out, const raft_hard_state *hs) {
  uint8_t p[WAL_HS_PAYLOAD];
  rf_put_le64(p, hs->term);
  rf_put_le64(p + 8, hs->vote);
  rf_put_le64(p + 16, hs->commit);
  return wal_encode(out, WAL_REC_HARDSTATE, 0, 0, 0, p, sizeof(p));
}

size_t wal_encode_seghdr(uint8_t *out, const wal_seghdr *h) {
  uint8_t p[WAL_SEG_PAYLOAD];
  memcpy(p, WAL_MAGIC, 8);
  rf_put_le32(p + 8, WAL_VERSION);
  rf_put_le32(p + 12, 0);
  rf_put_le64(p + 16, h->seq);
  rf_put_le64(p + 24, h->hs.term);
  rf_put_le64(p + 32, h->hs.vote);
  rf_put_le64(p + 40, h->hs.commit);
  rf_put_le64(p + 48, h->snap_index);
  rf_put_le64(p + 56, h->snap_term);
  return wal_encode(out, WAL_REC_SEGMENT, 0, h->base, 0, p, sizeof(p));
}

uint32_t wal_peek_len(const uint8_t *p) { return rf_get_le32(p); }

long wal_file_version(const uint8_t *p, size_t size) {
  if (size < WAL_VERSION_AT + 4 || memcmp(p + WAL_HDR, WAL_MAGIC, 8) != 0)
    return -1;
  return (long)rf_get_le32(p + WAL_VERSION_AT);
}

int wal_hdr_ok(const uint8_t *p) {
  return XXH3_64bits(p, 32) == rf_get_le64(p + 32);
}

/* Fields a record with good checksums must still satisfy. */
static int fields_ok(const wal_rec *r, const uint8_t *p) {
  if (p[6] != 0 || p[7] != 0) return 0;
  switch (r->type) {
  case WAL_REC_SEGMENT: return r->len == WAL_SEG_PAYLOAD;
  case WAL_REC_HARDSTATE: return r->len == WAL_HS_PAYLOAD;
  case WAL_REC_ENTRY: return r->index > 0;
  case WAL_REC_SNAPSHOT:
    return r->len == 0 && (r->sub & ~WAL_SNAP_RESET) == 0;
  default: return 0;
  }
}

int wal_decode(const uint8_t *p, size_t avail, wal_rec *r) {
  if (avail < WAL_HDR) return WAL_SHORT_HDR;
  if (XXH3_64bits(p, 32) != rf_get_le64(p + 32)) return WAL_BAD_HDR;
  r->len = rf_get_le32(p);
  r->type = p[4];
  r->sub = p[5];
  r->index = rf_get_le64(p + 8);
  r->term = rf_get_le64(p + 16);
  r->data = p + WAL_HDR;
  if (r->len > WAL_MAX_PAYLOAD) return WAL_BAD_FIELDS;
  if ((size_t)r->len > avail - WAL_HDR) return WAL_SHORT_BODY;
  if (XXH3_64bits(r->data, r->len) != rf_get_le64(p + 24)) return WAL_BAD_BODY;
  return fields_ok(r, p) ? WAL_OK : WAL_BAD_FIELDS;
}

int wal_parse_hs(const wal_rec *r, raft_hard_state *hs) {
  if (r->type != WAL_REC_HARDSTATE) return -1;
  hs->term = rf_get_le64(r->data);
  hs->vote = rf_get_le64(r->data + 8);
  hs->commit = rf_get_le64(r->data + 16);
  return 0;
}

int wal_parse_seghdr(const wal_rec *r, wal_seghdr *h) {
  const uint8_t *p = r->data;
  if (r->type != WAL_REC_SEGMENT || memcmp(p, WAL_MAGIC, 8) != 0 ||
      rf_get_le32(p + 8) != WAL_VERSION)
    return -1;
  h->base = r->index;
  h->seq = rf_get_le64(p + 16);
  h->hs.term = rf_get_le64(p + 24);
  h->hs.vote = rf_get_le64(p + 32);
  h->hs.commit = rf_get_le64(p + 40);
  h->snap_index = rf_get_le64(p + 48);
  h->snap_term = rf_get_le64(p + 56);
  return 0;
}

const char *wal_decode_str(int rc) {
  switch (rc) {
  case WAL_OK: return "ok";
  case WAL_SHORT_HDR: return "partial record header";
  case WAL_BAD_HDR: return "record header checksum mismatch";
  case WAL_SHORT_BODY: return "partial record";
  case WAL_BAD_BODY: return "record checksum mismatch";
  case WAL_BAD_FIELDS: return "malformed record";
  default: return "?";
  }
}
