"""One test module per module of the package (its folders mirror tiercache's): no Redis of its own."""
