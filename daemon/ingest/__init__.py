"""Getting files into the catalogue: the watcher and its observers, settling, the work queue, folder
planning, the indexing pipeline and its preparation of pictures, jobs and progress."""
