/*
 * vcstor-nfs-fuse: mount an NFSv3 export as a directory, in user space.
 *
 *   vcstor-nfs-fuse [-d] [-o OPTION[,OPTION...]] nfs://SERVER/EXPORT MOUNTPOINT
 *
 * Why it exists: the lab's hosts are network namespaces on one kernel that has no NFS
 * client, and qemu's libnfs driver reaches single image files only. This program is
 * libnfs (the NFS client) behind libfuse 3's high-level API (the directory): each FUSE
 * request becomes NFS calls on one libnfs context. Written for vcstor in the spirit of
 * Ronnie Sahlberg's fuse-nfs; see host-storage/fuse-nfs-client.ts for its driver.
 *
 * Concurrency: libnfs's synchronous API is not thread-safe, and every call runs libnfs's
 * own event loop until its reply arrives. So the program is single-threaded (fuse_loop):
 * one FUSE request at a time, one NFS call at a time (libnfs itself splits a read or
 * write larger than the server's rtmax/wtmax into several READ/WRITE calls in flight).
 *
 * Caching, and why these defaults (the figures measured through this mount must be
 * NFS's, not a cache's):
 *  - data: by default every file is opened direct_io: no kernel page cache, each read(2)
 *    and write(2) goes to the server as READ/WRITE (split at the FUSE connection's
 *    max_read/max_write, 1 MiB here). This is less caching than the kernel NFS client,
 *    which keeps a page cache with close-to-open consistency; a FUSE page cache would not
 *    be that cache (FUSE writes through on every write, and reads are cached without the
 *    kernel client's revalidation), so figures would mix two behaviours. With
 *    -o cache=page the kernel page cache is used for files not opened O_DIRECT, kept
 *    across opens while the file's mtime and size do not change (libfuse auto_cache,
 *    close-to-open-like); writes are still written through. A file opened O_DIRECT is
 *    direct_io in every mode, as with the kernel client, so a benchmark's O_DIRECT
 *    measures NFS, not the client's memory. Shared writable mmap of a direct_io file is
 *    refused by the kernel (ENODEV); private mappings (exec) work.
 *  - stability: writes are UNSTABLE; fsync(2) and every close(2) of a file written
 *    through that descriptor send COMMIT, as the kernel client does on close; -o sync
 *    opens files O_SYNC (FILE_SYNC writes).
 *  - metadata: libfuse's defaults (attributes and names cached 1 s, no negative
 *    caching): less than the kernel client's acregmin=3/acdirmin=30. libnfs's own
 *    directory cache is turned off: another client's changes (a shared space mounted by
 *    many hosts) must show at once.
 *  - identity: every NFS call carries one AUTH_SYS identity (-o uid=,gid=; default this
 *    process's). The kernel checks permissions against the attributes the server returns
 *    (default_permissions), so local users still see the mode bits enforced.
 *
 * Ports: libnfs 4.0 (Debian 12's; 5.x the same) takes `nfsport=` and `mountport=` as URL
 * arguments and then connects straight to them, asking no portmapper; -o nfsport=,
 * mountport= are passed on that way. rsize/wsize: libnfs 4.0 has no setter (5.0 added
 * nfs_set_readmax/writemax); it uses the server's FSINFO rtmax/wtmax (at most 1 MiB), so
 * -o rsize=,wsize= cap each call this program makes instead. libnfs 4.0's URLs take the
 * server up to the first '/', so an IPv6 address cannot be given.
 *
 * The server is contacted before anything is mounted: an unreachable server or a refused
 * export is a message on stderr and exit status 2, and nothing is left mounted. SIGTERM,
 * SIGINT and SIGHUP end the loop; the mount is then taken away (fuse_unmount) and the
 * exit status is 0. An umount(8) of the mountpoint also ends the program (status 0).
 */
#define FUSE_USE_VERSION 35
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <malloc.h>
#include <nfsc/libnfs.h>
#ifdef LIBNFS_API_V2
#error "written for the libnfs 4.x/5.x API (libnfs 6 reordered nfs_pread/nfs_pwrite's arguments)"
#endif
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

#define PROGRAM "vcstor-nfs-fuse"
#define FSTYPE "vcstor-nfs" /* mountinfo shows fuse.vcstor-nfs */

/* Command-line options of our own; everything else goes to libfuse. */
struct options {
	char *url;        /* nfs://SERVER/EXPORT[?libnfs args] */
	char *mountpoint;
	char *cache;      /* "none" (default) or "page" */
	int nfsport, mountport, rsize, wsize, timeout;
	int uid, gid;     /* -1: this process's */
	int sync;
	int help, version;
};

static struct options opts = { .uid = -1, .gid = -1 };

/* The one NFS context (see "Concurrency" above) and the transfer sizes in force. */
static struct nfs_context *nfs;
static size_t read_chunk, write_chunk;

/* An open file: libnfs's handle, and whether it was written since its last COMMIT. */
struct open_file {
	struct nfsfh *fh;
	int dirty;
};

#define OPT(t, p) { t, offsetof(struct options, p), 1 }
static const struct fuse_opt option_spec[] = {
	OPT("nfsport=%d", nfsport),
	OPT("mountport=%d", mountport),
	OPT("rsize=%d", rsize),
	OPT("wsize=%d", wsize),
	OPT("timeout=%d", timeout),
	OPT("uid=%d", uid),
	OPT("gid=%d", gid),
	OPT("cache=%s", cache),
	OPT("sync", sync),
	OPT("-h", help),
	OPT("--help", help),
	OPT("-V", version),
	OPT("--version", version),
	FUSE_OPT_KEY("-f", FUSE_OPT_KEY_DISCARD), /* always in the foreground */
	FUSE_OPT_KEY("-s", FUSE_OPT_KEY_DISCARD), /* always single-threaded */
	FUSE_OPT_END
};

/* The two positional arguments; anything else unknown is libfuse's. */
static int take_positional(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)data;
	(void)outargs;
	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	if (!opts.url)
		return (opts.url = strdup(arg)) ? 0 : -1;
	if (!opts.mountpoint)
		return (opts.mountpoint = strdup(arg)) ? 0 : -1;
	fprintf(stderr, PROGRAM ": unexpected argument '%s'\n", arg);
	return -1;
}

static struct open_file *file_of(struct fuse_file_info *fi)
{
	return (struct open_file *)(uintptr_t)fi->fh;
}

static void to_stat(const struct nfs_stat_64 *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_dev = n->nfs_dev;
	st->st_ino = n->nfs_ino;
	st->st_mode = n->nfs_mode; /* libnfs adds the S_IFMT bits from the NFS type */
	st->st_nlink = n->nfs_nlink;
	st->st_uid = n->nfs_uid;
	st->st_gid = n->nfs_gid;
	st->st_rdev = n->nfs_rdev;
	st->st_size = n->nfs_size;
	st->st_blksize = n->nfs_blksize;
	st->st_blocks = n->nfs_blocks;
	st->st_atim.tv_sec = n->nfs_atime;
	st->st_atim.tv_nsec = n->nfs_atime_nsec;
	st->st_mtim.tv_sec = n->nfs_mtime;
	st->st_mtim.tv_nsec = n->nfs_mtime_nsec;
	st->st_ctim.tv_sec = n->nfs_ctime;
	st->st_ctim.tv_nsec = n->nfs_ctime_nsec;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->use_ino = 1;   /* NFS fileids as inode numbers (hard links, fio, find) */
	if (opts.cache && strcmp(opts.cache, "page") == 0)
		cfg->auto_cache = 1;
	fprintf(stderr, PROGRAM ": mounted; FUSE max_write %u, max_read %u; NFS calls at most %zu bytes read, %zu written\n",
		conn->max_write, conn->max_read, read_chunk, write_chunk);
	return NULL;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct nfs_stat_64 n;
	/* An open file by its handle: no path lookup, and right after a rename. */
	int rc = fi ? nfs_fstat64(nfs, file_of(fi)->fh, &n) : nfs_lstat64(nfs, path, &n);
	if (rc == 0)
		to_stat(&n, st);
	return rc;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
	/* libnfs copies at most size bytes and may leave them unterminated. */
	int rc = nfs_readlink(nfs, path, buf, size > INT_MAX ? INT_MAX : (int)size);
	if (rc == 0 && size > 0)
		buf[size - 1] = '\0';
	return rc;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t offset,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct nfsdir *dir;
	struct nfsdirent *ent;
	(void)offset;
	(void)fi;
	(void)flags;
	/* READDIRPLUS, all entries in one go: libfuse keeps them for the kernel's later
	 * readdir calls at higher offsets (offset 0 to the filler). */
	int rc = nfs_opendir(nfs, path, &dir);
	if (rc != 0)
		return rc;
	while ((ent = nfs_readdir(nfs, dir)) != NULL) {
		struct stat st = { .st_ino = ent->inode, .st_mode = ent->mode };
		if (fill(buf, ent->name, &st, 0, 0))
			break;
	}
	nfs_closedir(nfs, dir);
	return 0;
}

static int op_mkdir(const char *path, mode_t mode)
{
	return nfs_mkdir2(nfs, path, mode);
}

static int op_rmdir(const char *path)
{
	return nfs_rmdir(nfs, path);
}

static int op_unlink(const char *path)
{
	return nfs_unlink(nfs, path);
}

static int op_symlink(const char *target, const char *path)
{
	return nfs_symlink(nfs, target, path);
}

static int op_link(const char *from, const char *to)
{
	return nfs_link(nfs, from, to);
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	/* NFSv3 RENAME replaces the target; it cannot refuse to, nor exchange. */
	if (flags != 0)
		return -EINVAL;
	return nfs_rename(nfs, from, to);
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return fi ? nfs_fchmod(nfs, file_of(fi)->fh, mode) : nfs_chmod(nfs, path, mode);
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	/* (uid_t)-1 / (gid_t)-1 leave that attribute unset in the SETATTR. */
	return fi ? nfs_fchown(nfs, file_of(fi)->fh, uid, gid) : nfs_lchown(nfs, path, uid, gid);
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	return fi ? nfs_ftruncate(nfs, file_of(fi)->fh, size) : nfs_truncate(nfs, path, size);
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	struct timeval times[2];
	struct nfs_stat_64 n = { 0 };
	(void)fi;
	/* Both "now": the server's clock (SETATTR SET_TO_SERVER_TIME). */
	if (tv[0].tv_nsec == UTIME_NOW && tv[1].tv_nsec == UTIME_NOW)
		return nfs_utimes(nfs, path, NULL);
	/* libnfs 4.0 takes microseconds and sets both times: an omitted one keeps its value,
	 * a "now" is this host's clock. */
	int need_stat = tv[0].tv_nsec == UTIME_OMIT || tv[1].tv_nsec == UTIME_OMIT;
	if (need_stat) {
		int rc = nfs_lstat64(nfs, path, &n);
		if (rc != 0)
			return rc;
	}
	for (int i = 0; i < 2; i++) {
		if (tv[i].tv_nsec == UTIME_NOW) {
			gettimeofday(&times[i], NULL);
		} else if (tv[i].tv_nsec == UTIME_OMIT) {
			times[i].tv_sec = i == 0 ? n.nfs_atime : n.nfs_mtime;
			times[i].tv_usec = (i == 0 ? n.nfs_atime_nsec : n.nfs_mtime_nsec) / 1000;
		} else {
			times[i].tv_sec = tv[i].tv_sec;
			times[i].tv_usec = tv[i].tv_nsec / 1000;
		}
	}
	return nfs_utimes(nfs, path, times);
}

/* Direct I/O unless -o cache=page, and always for O_DIRECT (see "Caching" above). */
static void choose_caching(struct fuse_file_info *fi)
{
	int page_cache = opts.cache && strcmp(opts.cache, "page") == 0;
	fi->direct_io = !page_cache || (fi->flags & O_DIRECT) != 0;
}

/* Flags libnfs acts on; O_DIRECT means nothing to an NFS server and stays here. */
static int nfs_flags(int flags)
{
	flags &= O_ACCMODE | O_APPEND | O_SYNC | O_DSYNC | O_TRUNC | O_EXCL | O_CREAT;
	return opts.sync ? flags | O_SYNC : flags;
}

static int remember(struct fuse_file_info *fi, struct nfsfh *fh)
{
	struct open_file *file = calloc(1, sizeof(*file));
	if (!file) {
		nfs_close(nfs, fh);
		return -ENOMEM;
	}
	file->fh = fh;
	fi->fh = (uint64_t)(uintptr_t)file;
	choose_caching(fi);
	return 0;
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct nfsfh *fh;
	/* The kernel has applied the caller's umask to mode already (libnfs's is 0). */
	int rc = nfs_create(nfs, path, nfs_flags(fi->flags) | O_CREAT, mode, &fh);
	return rc != 0 ? rc : remember(fi, fh);
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	struct nfsfh *fh;
	int rc = nfs_open(nfs, path, nfs_flags(fi->flags), &fh);
	return rc != 0 ? rc : remember(fi, fh);
}

static int op_read(const char *path, char *buf, size_t size, off_t offset, struct fuse_file_info *fi)
{
	size_t done = 0;
	(void)path;
	while (done < size) {
		size_t count = size - done < read_chunk ? size - done : read_chunk;
		/* libnfs 4/5's order: offset, count, buffer (6.x put the buffer first). */
		int rc = nfs_pread(nfs, file_of(fi)->fh, offset + done, count, buf + done);
		if (rc < 0)
			return done > 0 ? (int)done : rc;
		done += rc;
		if ((size_t)rc < count) /* end of file */
			break;
	}
	return (int)done;
}

static int op_write(const char *path, const char *buf, size_t size, off_t offset, struct fuse_file_info *fi)
{
	struct open_file *file = file_of(fi);
	size_t done = 0;
	(void)path;
	while (done < size) {
		size_t count = size - done < write_chunk ? size - done : write_chunk;
		int rc = nfs_pwrite(nfs, file->fh, offset + done, count, (char *)buf + done);
		if (rc < 0)
			return done > 0 ? (int)done : rc;
		if (rc == 0)
			return done > 0 ? (int)done : -EIO;
		done += rc;
		file->dirty = 1;
	}
	return (int)done;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync; /* COMMIT is the only flush NFSv3 has */
	int rc = nfs_fsync(nfs, file_of(fi)->fh);
	if (rc == 0)
		file_of(fi)->dirty = 0;
	return rc;
}

/* Each close(2): COMMIT what was written, so that close reports a failed write (and the
 * next client to open the file sees stable data), as the kernel NFS client does. */
static int op_flush(const char *path, struct fuse_file_info *fi)
{
	return file_of(fi)->dirty ? op_fsync(path, 0, fi) : 0;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	struct open_file *file = file_of(fi);
	(void)path;
	nfs_close(nfs, file->fh);
	free(file);
	return 0;
}

static int op_statfs(const char *path, struct statvfs *out)
{
	struct nfs_statvfs_64 s;
	int rc = nfs_statvfs64(nfs, path, &s);
	if (rc != 0)
		return rc;
	memset(out, 0, sizeof(*out));
	out->f_bsize = s.f_bsize;
	out->f_frsize = s.f_frsize;
	out->f_blocks = s.f_blocks;
	out->f_bfree = s.f_bfree;
	out->f_bavail = s.f_bavail;
	out->f_files = s.f_files;
	out->f_ffree = s.f_ffree;
	out->f_favail = s.f_favail;
	out->f_fsid = s.f_fsid;
	out->f_flag = s.f_flag;
	out->f_namemax = s.f_namemax;
	return 0;
}

static int op_access(const char *path, int mode)
{
	/* The server's ACCESS answer for our identity; F_OK is a lookup. */
	if (mode == F_OK) {
		struct nfs_stat_64 n;
		return nfs_lstat64(nfs, path, &n);
	}
	return nfs_access(nfs, path, mode);
}

static const struct fuse_operations operations = {
	.init = op_init,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.readdir = op_readdir,
	.mkdir = op_mkdir,
	.rmdir = op_rmdir,
	.unlink = op_unlink,
	.symlink = op_symlink,
	.link = op_link,
	.rename = op_rename,
	.chmod = op_chmod,
	.chown = op_chown,
	.truncate = op_truncate,
	.utimens = op_utimens,
	.create = op_create,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.release = op_release,
	.statfs = op_statfs,
	.access = op_access,
};

static void usage(void)
{
	printf("usage: " PROGRAM " [-d] [-o OPTION[,OPTION...]] nfs://SERVER/EXPORT MOUNTPOINT\n"
	       "Mounts an NFSv3 export as a directory through FUSE; stays in the foreground.\n\n"
	       "options:\n"
	       "  -o nfsport=N      NFS port (with mountport: no portmapper is asked)\n"
	       "  -o mountport=N    MOUNT protocol port\n"
	       "  -o rsize=N        at most N bytes per READ (default: the server's rtmax)\n"
	       "  -o wsize=N        at most N bytes per WRITE (default: the server's wtmax)\n"
	       "  -o uid=N,gid=N    the AUTH_SYS identity of every call (default: this process's)\n"
	       "  -o timeout=S      fail a call with EIO after S seconds (default: retry forever,\n"
	       "                    like a hard kernel mount; the first contact gives up after 30 s)\n"
	       "  -o cache=none     no page cache: every read and write goes to the server (default)\n"
	       "  -o cache=page     the kernel page cache for files not opened O_DIRECT\n"
	       "  -o sync           every write FILE_SYNC (files opened O_SYNC)\n"
	       "  -o ro             read-only; other FUSE mount options pass on to libfuse\n"
	       "  -d                FUSE debug output\n\n"
	       "exit status: 0 after SIGTERM/SIGINT or an unmount; 1 bad usage; 2 the server could\n"
	       "not be reached or refused the export; 3 the mount failed.\n");
}

/* fsname=nfs://... without libnfs arguments, commas escaped for libfuse's -o parser. */
static char *mount_options(const char *server, const char *path)
{
	size_t len = 2 * (strlen(server) + strlen(path)) + 128;
	char *out = malloc(len), *p;
	if (!out)
		return NULL;
	p = out + sprintf(out, "subtype=" FSTYPE ",allow_other,default_permissions,fsname=nfs://");
	for (const char *s = server; *s; s++)
		*p++ = *s;
	for (const char *s = path; *s; s++) {
		if (*s == ',' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p = '\0';
	return out;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct nfs_url *url;
	char full_url[PATH_MAX + 256], mountpoint[PATH_MAX];
	int rc;

	/* Each 1 MiB request takes a fresh buffer from libfuse and another from libnfs; glibc
	 * would map and unmap (or trim) them every time, and faulting 2 MiB of new pages in
	 * per request cost 8-10 ms on this project's VMs (a 1 MiB READ at ~100 MB/s instead
	 * of ~600). Keep freed memory for reuse instead. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	if (fuse_opt_parse(&args, &opts, option_spec, take_positional) != 0)
		return 1;
	if (opts.help) {
		usage();
		return 0;
	}
	if (opts.version) {
		printf(PROGRAM " 1 (libfuse %d)\n", fuse_version());
		return 0;
	}
	if (!opts.url || !opts.mountpoint || strncmp(opts.url, "nfs://", 6) != 0 || strlen(opts.url) > PATH_MAX) {
		fprintf(stderr, PROGRAM ": need nfs://SERVER/EXPORT and MOUNTPOINT (see --help)\n");
		return 1;
	}
	if (opts.cache && strcmp(opts.cache, "none") != 0 && strcmp(opts.cache, "page") != 0) {
		fprintf(stderr, PROGRAM ": cache=%s: must be none or page\n", opts.cache);
		return 1;
	}
	if (!realpath(opts.mountpoint, mountpoint)) {
		fprintf(stderr, PROGRAM ": mountpoint %s: %s\n", opts.mountpoint, strerror(errno));
		return 1;
	}

	/* The ports as libnfs's URL arguments: the only way libnfs 4.0 takes them. */
	snprintf(full_url, sizeof(full_url), "%s", opts.url);
	if (opts.nfsport > 0 || opts.mountport > 0) {
		size_t used = strlen(full_url);
		char sep = strchr(full_url, '?') ? '&' : '?';
		if (opts.nfsport > 0)
			used += snprintf(full_url + used, sizeof(full_url) - used, "%cnfsport=%d", sep, opts.nfsport), sep = '&';
		if (opts.mountport > 0)
			snprintf(full_url + used, sizeof(full_url) - used, "%cmountport=%d", sep, opts.mountport);
	}

	nfs = nfs_init_context();
	if (!nfs) {
		fprintf(stderr, PROGRAM ": cannot create an NFS context\n");
		return 2;
	}
	nfs_set_version(nfs, 3); /* NFS_V3, the default: said, not assumed */
	nfs_umask(nfs, 0);          /* the kernel applied the caller's umask already */
	nfs_set_dircache(nfs, 0);   /* see "Caching" */
	if (opts.uid >= 0)
		nfs_set_uid(nfs, opts.uid);
	if (opts.gid >= 0)
		nfs_set_gid(nfs, opts.gid);
	url = nfs_parse_url_dir(nfs, full_url);
	if (!url) {
		fprintf(stderr, PROGRAM ": %s: %s\n", opts.url, nfs_get_error(nfs));
		return 1;
	}

	/* Reach the server before mounting anything, and give up on it in bounded time. */
	nfs_set_timeout(nfs, 30000);
	rc = nfs_mount(nfs, url->server, url->path);
	if (rc != 0) {
		/* libnfs says only "nfs_service failed" when the connection failed. */
		const char *why = nfs_get_error(nfs);
		char hint[160] = "";
		if (strstr(why, "nfs_service failed") || strstr(why, "connect"))
			snprintf(hint, sizeof(hint), " (no answer: the server is unreachable, or nothing listens on %s)",
				 opts.mountport > 0 ? "the MOUNT and NFS ports given" : "the portmapper's port 111; give -o nfsport=,mountport=");
		fprintf(stderr, PROGRAM ": cannot mount %s:%s: %s%s\n", url->server, url->path, why, hint);
		return 2;
	}
	nfs_set_timeout(nfs, opts.timeout > 0 ? opts.timeout * 1000 : -1);
	read_chunk = nfs_get_readmax(nfs);
	write_chunk = nfs_get_writemax(nfs);
	if (opts.rsize > 0 && (size_t)opts.rsize < read_chunk)
		read_chunk = opts.rsize;
	if (opts.wsize > 0 && (size_t)opts.wsize < write_chunk)
		write_chunk = opts.wsize;
	fprintf(stderr, PROGRAM ": connected to %s:%s over NFSv3 (server rtmax %llu, wtmax %llu)\n", url->server, url->path,
		(unsigned long long)nfs_get_readmax(nfs), (unsigned long long)nfs_get_writemax(nfs));

	char *mount_opts = mount_options(url->server, url->path);
	if (!mount_opts || fuse_opt_add_arg(&args, "-o") != 0 || fuse_opt_add_arg(&args, mount_opts) != 0)
		return 3;
	struct fuse *fuse = fuse_new(&args, &operations, sizeof(operations), NULL);
	if (!fuse)
		return 3; /* libfuse said why */
	if (fuse_mount(fuse, mountpoint) != 0) {
		fuse_destroy(fuse);
		return 3;
	}
	struct fuse_session *session = fuse_get_session(fuse);
	if (fuse_set_signal_handlers(session) != 0) {
		fuse_unmount(fuse);
		fuse_destroy(fuse);
		return 3;
	}

	/* Until a signal or an unmount. A signal's number comes back as a positive value. */
	rc = fuse_loop(fuse);

	fuse_remove_signal_handlers(session);
	fuse_unmount(fuse);
	fuse_destroy(fuse);
	/* No UMNT call: it is advisory, and could block on a server that is gone. */
	nfs_destroy_url(url);
	nfs_destroy_context(nfs);
	fuse_opt_free_args(&args);
	if (rc < 0) {
		fprintf(stderr, PROGRAM ": FUSE loop failed: %s\n", strerror(-rc));
		return 3;
	}
	fprintf(stderr, PROGRAM ": unmounted %s%s\n", mountpoint, rc > 0 ? " (signal)" : "");
	return 0;
}
