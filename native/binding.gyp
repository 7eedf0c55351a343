# Alternative build with node-gyp (`npx node-gyp rebuild` in native/). The install
# script (scripts/build-native.mjs) calls the C compiler directly instead, which needs
# no Python and no header download; both produce build/Release/ferry_ktls.node.
{
  "targets": [
    {
      "target_name": "ferry_ktls",
      "sources": ["ktls.c"],
      "cflags": ["-O2", "-std=gnu99", "-Wall", "-Wextra"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
