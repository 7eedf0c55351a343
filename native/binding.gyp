# Alternative build with node-gyp (`npx node-gyp rebuild` in native/). The install
# script (scripts/build-native.mjs) calls the C compiler directly instead, which needs
# no Python and no header download; both produce build/Release/ferry_native.node.
# Nothing is linked: records.c finds Node's own OpenSSL (EVP_*) in the node binary.
{
  "targets": [
    {
      "target_name": "ferry_native",
      "sources": ["ferry.c", "ktls.c", "records.c", "fs-batch.c", "net-batch.c", "content-hash.c", "meta.c", "fs-walk.c"],
      "cflags": ["-O2", "-std=gnu99", "-Wall", "-Wextra"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
