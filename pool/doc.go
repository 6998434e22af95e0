// Package pool finds, locks and opens dmsnap pools on a host.
//
// A Host scans the device directory and the remembered image files for
// PV labels (Discover), takes a pool's lock (Lock) and loads its metadata
// (Open). A Session bundles what one command holds on one pool: the lock,
// the store, the attached PVs and a device-mapper client, with one Close.
// The CLI and the monitor both go through it.
//
// Hazards: loop devices of image files are attached with autoclear and
// held open for the session, so that one held only by tables the session
// may remove does not detach under it; the lock is never waited for.
package pool
