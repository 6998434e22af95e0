// Package report renders dmsnap's lists the way lvs(8) does: named columns
// chosen with -o (replace) or -o +cols (append), sorted with -O [-]col,
// filtered with -S, aligned or split by --separator, sizes in one format
// (--units, --nosuffix), and the same rows as JSON.
//
// Every list command describes its columns once ([Column]) and adds rows of
// typed values; the flags are validated against those columns before anything
// is printed, so a misspelt column is an error naming the valid ones.
package report
