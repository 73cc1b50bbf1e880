/* fs.h — small file-system helpers shared by the programs. */
#ifndef KVCHAT_COMMON_FS_H
#define KVCHAT_COMMON_FS_H

/* mkdir -p with mode 0755. Returns 0, or -errno (the directories made
 * before the failure stay). */
int fs_mkdirs(const char *path);

#endif
