/* engine/notify.h - tells systemd (Type=notify) where the daemon is:
 * READY=1 once it delivers, RELOADING=1 then READY=1 around a SIGHUP
 * reload, STOPPING=1 when it stops. The sd_notify(3) datagram protocol,
 * written here rather than linking libsystemd for one sendto(): a
 * documented, stable interface (systemd's own words) that needs only the
 * NOTIFY_SOCKET variable. Without it, nothing is sent. */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

/* Sends state ("READY=1", ...) to $NOTIFY_SOCKET; silent when unset or
 * when it fails (the service manager is told by other means: exit). */
void notify_service(const char *state);
/* "RELOADING=1" with the MONOTONIC_USEC systemd wants with it. */
void notify_reloading(void);
#endif
