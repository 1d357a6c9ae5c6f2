/*
** ctl.h -- `rafting ctl`: the command-line client of the REST API.
*/
#ifndef RAFTING_CTL_H
#define RAFTING_CTL_H

#include <stddef.h>

#include "rafting/buf.h"

/* argv[0] is "ctl".  Returns the exit status (see RF_CTL_EXIT_*). */
int rf_ctl_main(int argc, char **argv);

enum {
  RF_CTL_OK = 0,
  RF_CTL_NOTFOUND = 1,
  RF_CTL_USAGE = 2,
  RF_CTL_UNAVAILABLE = 3,
  RF_CTL_REFUSED = 4
};

/* JSON text s[0..n) indented by two spaces per level, with a final
** newline, appended to o.  Not validated: what is not JSON keeps its
** bytes, only its whitespace outside strings changes. */
void rf_ctl_json_pretty(rf_buf *o, const char *s, size_t n);

#endif
