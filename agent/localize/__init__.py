"""Where the time goes and what guards it: profiles to ranked hotspots, function spans in the source, and the tests that
reach each function."""
