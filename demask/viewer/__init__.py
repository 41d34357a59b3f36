"""`demask view`: a decode replayed in the browser (see demask.viewer.app)."""
