/* ferry's content hash, "xxh3x2" (content-hash.c). */
#ifndef FERRY_CONTENT_HASH_H
#define FERRY_CONTENT_HASH_H
#include <stddef.h>
#include <stdint.h>
size_t content_hash_state_bytes(void);
void content_hash_init(uint8_t *state);
int content_hash_valid(const uint8_t *state);
void content_hash_update(uint8_t *state, const uint8_t *data, size_t len);
void content_hash_digest(const uint8_t *state, uint8_t out[16]);
void content_hash_of(const uint8_t *data, size_t len, uint8_t out[16]);
/* Which stripe loop runs ("scalar", "sse2", "avx2", "avx512"); use_kernel picks one this CPU has (tests), 0 if not. */
const char *content_hash_kernel(void);
int content_hash_use_kernel(const char *name);
#endif
