/*
** bytes.h -- fixed-width integers in a byte order, LEB128 varints and the
** splitmix64 mixer: the one copy every encoder uses.
**
** Header-only (static inline), so the pure core can use it without linking
** anything.  Nothing allocates; callers own every buffer and size it
** (RF_UVARINT_MAX bytes for a varint).
*/
#ifndef RAFTING_BYTES_H
#define RAFTING_BYTES_H

#include <stddef.h>
#include <stdint.h>

#define RF_UVARINT_MAX 10 /* bytes of the longest uvarint (a u64) */

static inline void rf_put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void rf_put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t rf_get_le32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static inline uint64_t rf_get_le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static inline void rf_put_be32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static inline void rf_put_be64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint32_t rf_get_be32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v = (v << 8) | p[i];
  return v;
}

static inline uint64_t rf_get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

/* LEB128, minimal.  Returns the bytes written (1..RF_UVARINT_MAX). */
static inline size_t rf_put_uvarint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

/* Bytes taken by the uvarint at p, 0 if it runs past avail, -1 if it is
** malformed: longer than a u64, or not minimal (so that equal values always
** have equal bytes). */
static inline int rf_get_uvarint(const uint8_t *p, size_t avail, uint64_t *v) {
  uint64_t x = 0;
  for (size_t i = 0; i < RF_UVARINT_MAX; i++) {
    if (i == avail) return 0;
    if (i == RF_UVARINT_MAX - 1 && p[i] > 1) return -1;
    x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) {
      if (p[i] == 0 && i > 0) return -1;
      *v = x;
      return (int)i + 1;
    }
  }
  return -1;
}

/* splitmix64: advances *state and returns the next well-mixed value.  Any
** seed works; not for secrets. */
static inline uint64_t rf_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

#endif
