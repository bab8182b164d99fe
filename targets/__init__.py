"""One module per runtime (export + runner + capabilities) and the export driver."""
