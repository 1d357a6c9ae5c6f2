/*
** file.c -- reading a small file whole (see rafting/util.h).
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "rafting/error.h"
#include "rafting/util.h"

int rf_read_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *p = NULL;
  long n;
  *out = NULL;
  if (f == NULL) return errno ? -errno : RF_EIO;
  if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
      (p = malloc((size_t)n + 1)) == NULL ||
      fread(p, 1, (size_t)n, f) != (size_t)n) {
    free(p);
    fclose(f);
    return RF_EIO;
  }
  fclose(f);
  p[n] = '\0';
  *out = p;
  *len = (size_t)n;
  return 0;
}
