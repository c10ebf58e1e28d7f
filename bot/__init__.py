"""backbot: screening dialog, cited advice and safe low-impact cardio suggestions."""
