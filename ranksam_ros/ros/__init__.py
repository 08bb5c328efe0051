"""ROS 2 side of ranksam_ros (needs rclpy and ranksam_msgs; the rest of the package does not)."""
