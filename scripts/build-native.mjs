// Builds the optional kTLS setsockopt addon (native/). Never fails the install:
// without a compiler ferry runs with the userspace record layer only.
// (Filled in by the kTLS work; until then this is a no-op.)
process.exit(0);
