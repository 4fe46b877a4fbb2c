"""Small task datasets shipped with the project, with answers that can be checked exactly."""
