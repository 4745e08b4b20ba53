"""Privacy mechanisms applied to a node's weight delta before it leaves the hospital."""
