package sendstream

import "encoding/binary"

// Record layout of OpenZFS's dmu_replay_record_t (include/sys/zfs_ioctl.h,
// OpenZFS 2.3, unchanged since 0.8 apart from new fields in padding):
// a 312-byte header, little-endian on the x86 hosts dmsnap runs on,
//
//	0   uint32 drr_type      (enum: BEGIN 0 ... REDACT 10)
//	4   uint32 drr_payloadlen (only trusted for DRR_BEGIN)
//	8   union drr_u          (304 bytes; per type below)
//	280 zio_cksum_t drr_checksum.drr_checksum: fletcher-4 of the
//	    stream up to here, zero in DRR_BEGIN (and in the final DRR_END
//	    of a compound stream, which carries no checksum at all)
//
// followed by the record's payload, whose length is derived from the
// header per type (the DRR_*_PAYLOAD_SIZE macros), not from
// drr_payloadlen.
const (
	headerSize   = 312
	checksumOff  = 280
	unionOff     = 8
	backupMagic  = 0x2F5bacbac
	swappedMagic = 0xaccbbaf502000000 // bswap64(backupMagic)
)

// Record types (enum in dmu_replay_record_t).
const (
	drrBegin = iota
	drrObject
	drrFreeObjects
	drrWrite
	drrFree
	drrEnd
	drrWriteByRef
	drrSpill
	drrWriteEmbedded
	drrObjectRange
	drrRedact
	drrNumTypes
)

var typeNames = [...]string{"DRR_BEGIN", "DRR_OBJECT", "DRR_FREEOBJECTS", "DRR_WRITE", "DRR_FREE",
	"DRR_END", "DRR_WRITE_BYREF", "DRR_SPILL", "DRR_WRITE_EMBEDDED", "DRR_OBJECT_RANGE", "DRR_REDACT"}

func typeName(t uint32) string {
	if t < drrNumTypes {
		return typeNames[t]
	}
	return "record type " + itoa(uint64(t))
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// drr_versioninfo: bits 0-1 header type, bits 2-57 feature flags.
const (
	hdrSubstream = 1
	hdrCompound  = 2
)

// Feature is one DMU_BACKUP_FEATURE_* flag of drr_versioninfo.
type Feature uint64

// Feature flags (DMU_BACKUP_FEATURE_*, include/sys/zfs_ioctl.h).
const (
	FeatureDedup               Feature = 1 << 0
	FeatureDedupProps          Feature = 1 << 1
	FeatureSASpill             Feature = 1 << 2
	FeatureEmbedData           Feature = 1 << 16
	FeatureLZ4                 Feature = 1 << 17
	FeatureLargeBlocks         Feature = 1 << 19
	FeatureResuming            Feature = 1 << 20
	FeatureRedacted            Feature = 1 << 21
	FeatureCompressed          Feature = 1 << 22
	FeatureLargeDnode          Feature = 1 << 23
	FeatureRaw                 Feature = 1 << 24
	FeatureZstd                Feature = 1 << 25
	FeatureHolds               Feature = 1 << 26
	FeatureSwitchToLargeBlocks Feature = 1 << 27
	FeatureLongname            Feature = 1 << 28
	FeatureLargeMicrozap       Feature = 1 << 29

	// knownFeatures is DMU_BACKUP_FEATURE_MASK plus DEDUP and DEDUPPROPS
	// (old dedup streams: refused later, at their DRR_WRITE_BYREF, with
	// a clearer message than "unknown feature").
	knownFeatures = FeatureDedup | FeatureDedupProps | FeatureSASpill | FeatureEmbedData | FeatureLZ4 |
		FeatureLargeBlocks | FeatureResuming | FeatureRedacted | FeatureCompressed | FeatureLargeDnode |
		FeatureRaw | FeatureZstd | FeatureHolds | FeatureSwitchToLargeBlocks | FeatureLongname | FeatureLargeMicrozap
)

// Objset types (dmu_objset_type_t, include/sys/fs/zfs.h) in drr_begin.drr_type.
const (
	ObjsetFilesystem = 2 // DMU_OST_ZFS
	ObjsetZvol       = 3 // DMU_OST_ZVOL
)

// ZvolObject is the object that holds a zvol's data (ZVOL_OBJ,
// include/sys/zvol.h); object 2 is its property ZAP.
const ZvolObject = 1

// Limits, the same the kernel's receive checks (module/zfs/dmu_recv.c
// recv_check_drr_*, dmu_recv_begin): no record is accepted whose sizes a
// real receive would refuse.
const (
	maxBlockSize     = 16 << 20 // SPA_MAXBLOCKSIZE
	oldMaxBlockSize  = 128 << 10
	minBlockSize     = 512         // SPA_MINBLOCKSIZE
	maxBeginPayload  = 1 << 28     // dmu_recv_begin: MIN(1<<28, arc/4)
	maxEmbeddedPSize = 112         // BPE_PAYLOAD_SIZE
	maxBonusLen      = 32*512 - 64 // DN_SLOTS_TO_BONUSLEN(DNODE_MAX_SLOTS)
	// EOF is a DRR_FREE length meaning "to the end of the object".
	freeToEOF = ^uint64(0)
)

var le = binary.LittleEndian

// u64 and friends read the union at its offset (offsets below are within
// drr_u, as in the C struct).
func u64(h []byte, off int) uint64 { return le.Uint64(h[unionOff+off:]) }
func u32(h []byte, off int) uint32 { return le.Uint32(h[unionOff+off:]) }
func u8(h []byte, off int) uint8   { return h[unionOff+off] }
