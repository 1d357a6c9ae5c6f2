/*
** notify.h -- tell a service manager how the node is doing, the systemd
** sd_notify(3) protocol without libsystemd: one datagram of "KEY=VALUE"
** lines to the AF_UNIX socket named by $NOTIFY_SOCKET.  Pure libc.
*/
#ifndef RAFTING_NOTIFY_H
#define RAFTING_NOTIFY_H

/* Send state (e.g. "READY=1", "STOPPING=1") to $NOTIFY_SOCKET.  0 when
** sent or when the variable is unset (no manager is listening); else a
** negative RF_E* code: RF_EINVAL for a name that is neither an absolute
** path nor "@abstract" or is too long, -errno when the send fails. */
int rf_notify(const char *state);

#endif
