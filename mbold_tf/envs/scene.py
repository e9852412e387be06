"""MJCF for the tabletop scene: a 7-DoF Sawyer-proportioned arm with a 2-finger gripper.

Everything is authored from primitive geoms (capsules, boxes, cylinders) so that a 64×64 frame
renders in well under a millisecond through EGL/OSMesa; shadows, reflections and multisampling
are off. Coordinates are metres, the table top is z = 0, the arm's base is at the origin and the
workspace centre is ``WORKSPACE_CENTER``.

The end effector is driven by a mocap weld (as in Meta-World, which the paper's Sawyer tasks come
from): the hand is welded to a mocap body and the arm's seven hinge joints follow through the
constraint solver. This keeps the 4-D action (Cartesian xyz displacement + gripper) exact and
cheap (no IK iteration per step), while ``joint_pos`` still reports real, changing arm joint
angles — the proprioception that hard-negative mining keys on.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

WORKSPACE_CENTER = np.array([0.0, 0.6, 0.0])
# End-effector (fingertip centre) box the action is clipped to, in world coordinates.
EE_LOW = np.array([-0.28, 0.32, 0.015])
EE_HIGH = np.array([0.28, 0.86, 0.12])
BLOCK_HALF = 0.03  # 6 cm cubes
BLOCK_COLORS = ((0.85, 0.15, 0.15), (0.15, 0.7, 0.2), (0.2, 0.3, 0.9))
ARM_JOINTS = tuple(f"j{i}" for i in range(7))
FINGER_JOINTS = ("finger_l", "finger_r")
FINGER_RANGE = (0.0, 0.025)
# Door: a panel that slides along x behind the workspace, moved by a vertical handle.
DOOR_Y = 0.80
DOOR_RANGE = (-0.05, 0.45)      # slide joint range (m); slide 0 puts the handle at x = DOOR_X0
DOOR_X0 = -0.25
# The hand points down: rotation of -90 degrees about x (hand-local +y -> world -z).
HAND_QUAT = (0.70710678, -0.70710678, 0.0, 0.0)


def _rgba(rgb, a=1.0):
    return " ".join(f"{c:.3g}" for c in (*rgb, a))


def _arm_xml() -> str:
    """The arm chain: pedestal, 7 hinges (yaw, pitch, roll, pitch, roll, pitch, roll), hand."""
    arm = _rgba((0.75, 0.2, 0.2))
    dark = _rgba((0.2, 0.2, 0.22))
    return f"""
    <body name="base" pos="0 0 0">
      <geom name="pedestal" type="cylinder" size="0.09 0.11" pos="0 0 0.11" rgba="{dark}"/>
      <body name="link0" pos="0 0 0.22" gravcomp="1">
        <joint name="j0" axis="0 0 1" range="-2.5 2.5"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.12" size="0.06" rgba="{arm}"/>
        <body name="link1" pos="0 0 0.14" gravcomp="1">
          <joint name="j1" axis="1 0 0" range="-2.2 2.2"/>
          <geom type="capsule" fromto="0 0 0 0 0.12 0" size="0.055" rgba="{arm}"/>
          <body name="link2" pos="0 0.12 0" gravcomp="1">
            <joint name="j2" axis="0 1 0" range="-2.9 2.9"/>
            <geom type="capsule" fromto="0 0 0 0 0.26 0" size="0.045" rgba="{arm}"/>
            <body name="link3" pos="0 0.26 0" gravcomp="1">
              <joint name="j3" axis="1 0 0" range="-2.9 2.9"/>
              <geom type="capsule" fromto="0 0 0 0 0.14 0" size="0.042" rgba="{dark}"/>
              <body name="link4" pos="0 0.14 0" gravcomp="1">
                <joint name="j4" axis="0 1 0" range="-2.9 2.9"/>
                <geom type="capsule" fromto="0 0 0 0 0.24 0" size="0.036" rgba="{arm}"/>
                <body name="link5" pos="0 0.24 0" gravcomp="1">
                  <joint name="j5" axis="1 0 0" range="-2.9 2.9"/>
                  <geom type="capsule" fromto="0 0 0 0 0.06 0" size="0.033" rgba="{dark}"/>
                  <body name="link6" pos="0 0.06 0" gravcomp="1">
                    <joint name="j6" axis="0 1 0" range="-3.1 3.1"/>
                    <body name="hand" pos="0 0.04 0" gravcomp="1">
                      <geom name="palm" type="box" size="0.045 0.012 0.02" pos="0 0.012 0"
                            rgba="{dark}"/>
                      <site name="ee" pos="0 0.075 0" size="0.005" rgba="0 0 0 0"/>
                      <body name="finger_l" pos="-0.012 0.024 0" gravcomp="1">
                        <joint name="finger_l" type="slide" axis="-1 0 0"
                               range="{FINGER_RANGE[0]} {FINGER_RANGE[1]}"/>
                        <geom name="finger_l" type="box" size="0.006 0.028 0.014"
                              pos="0 0.028 0" rgba="{dark}" friction="1.5 0.01 0.001"/>
                      </body>
                      <body name="finger_r" pos="0.012 0.024 0" gravcomp="1">
                        <joint name="finger_r" type="slide" axis="1 0 0"
                               range="{FINGER_RANGE[0]} {FINGER_RANGE[1]}"/>
                        <geom name="finger_r" type="box" size="0.006 0.028 0.014"
                              pos="0 0.028 0" rgba="{dark}" friction="1.5 0.01 0.001"/>
                      </body>
                    </body>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def _blocks_xml(num_blocks: int) -> str:
    out = []
    for i in range(num_blocks):
        out.append(f"""
    <body name="block{i}" pos="{0.1 * i:.2f} {WORKSPACE_CENTER[1]:.2f} {BLOCK_HALF}">
      <freejoint name="block{i}"/>
      <geom name="block{i}" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}" mass="0.1"
            rgba="{_rgba(BLOCK_COLORS[i])}" friction="0.6 0.005 0.0001"/>
    </body>""")
    return "".join(out)


def _door_xml() -> str:
    wood = _rgba((0.55, 0.4, 0.25))
    frame = _rgba((0.35, 0.35, 0.38))
    return f"""
    <geom name="door_rail" type="box" size="0.45 0.02 0.01" pos="0.1 {DOOR_Y + 0.03} 0.01"
          rgba="{frame}" contype="0" conaffinity="0"/>
    <body name="door" pos="{DOOR_X0} {DOOR_Y + 0.03} 0.0">
      <joint name="door_slide" type="slide" axis="1 0 0" range="{DOOR_RANGE[0]} {DOOR_RANGE[1]}"
             damping="8" frictionloss="0.5" limited="true"/>
      <geom name="door_panel" type="box" size="0.12 0.012 0.06" pos="0 0 0.07" mass="1"
            rgba="{wood}"/>
      <geom name="door_handle" type="box" size="0.012 0.07 0.05" pos="0 -0.082 0.06" mass="0.1"
            rgba="{_rgba((0.9, 0.8, 0.1))}"/>
    </body>"""


def build_scene_xml(num_blocks: int = 0, door: bool = False,
                    image_size: int = 64, camera: Sequence[float] = (0.0, 1.12, 0.78)) -> str:
    """Returns the MJCF XML string for a scene.

    Args:
      num_blocks: 0 (reach), 1 (push1) or 3 (push3) free 5 cm cubes.
      door: add the sliding door with its handle.
      image_size: the offscreen buffer size (square frames).
      camera: position of the fixed camera, which looks at the workspace centre.
    Returns:
      str, an MJCF document.
    """
    if not 0 <= num_blocks <= len(BLOCK_COLORS):
        raise ValueError(f"num_blocks={num_blocks} is out of range [0, {len(BLOCK_COLORS)}]")
    cx, cy, cz = camera
    table = _rgba((0.82, 0.8, 0.74))
    floor = _rgba((0.35, 0.4, 0.45))
    finger_act = "".join(
        f'<position name="{j}" joint="{j}" kp="300" ctrlrange="{FINGER_RANGE[0]} '
        f'{FINGER_RANGE[1]}"/>' for j in FINGER_JOINTS)
    return f"""<mujoco model="mbold_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.005" iterations="20" ls_iterations="10" noslip_iterations="0"
          integrator="implicitfast">
    <flag warmstart="enable"/>
  </option>
  <size memory="4M"/>
  <visual>
    <global offwidth="{image_size}" offheight="{image_size}" fovy="40"/>
    <quality shadowsize="0" offsamples="0" numslices="8" numstacks="4"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.55 0.55 0.55" specular="0 0 0"/>
    <map znear="0.05" zfar="5"/>
  </visual>
  <default>
    <joint damping="2" armature="0.05"/>
    <geom friction="0.8 0.005 0.0001" solref="0.01 1" solimp="0.95 0.99 0.001"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.3" rgba="{floor}"
          contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="0.5 0.42 0.05" pos="0 0.6 -0.05" rgba="{table}"/>
    <body name="workspace" pos="{WORKSPACE_CENTER[0]} {WORKSPACE_CENTER[1]} 0"/>
    <camera name="fixed" mode="targetbody" target="workspace" pos="{cx} {cy} {cz}"/>
    <body name="mocap" mocap="true" pos="0 0.6 0.2" quat="{' '.join(map(str, HAND_QUAT))}"/>
    {_arm_xml()}
    {_blocks_xml(num_blocks)}
    {_door_xml() if door else ''}
  </worldbody>
  <equality>
    <weld name="hand_weld" body1="mocap" body2="hand" relpose="0 0 0 1 0 0 0"
          solref="0.02 1" solimp="0.95 0.99 0.001"/>
  </equality>
  <contact>
    <exclude body1="base" body2="link0"/>
    <exclude body1="link0" body2="link1"/>
  </contact>
  <actuator>{finger_act}</actuator>
</mujoco>"""
