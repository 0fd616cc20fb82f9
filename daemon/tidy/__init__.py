"""Acting on duplicates, safely and undoably: the freedesktop.org Trash, moves and hard links,
each file journaled in the catalogue before it is touched, undone on request, finished or
rolled back after a crash."""
