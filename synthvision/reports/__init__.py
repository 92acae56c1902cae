"""What a person reads: report and contact-sheet rendering."""
